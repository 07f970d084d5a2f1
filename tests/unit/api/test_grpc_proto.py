"""The checked-in gRPC modules are what grpcio-tools makes of the checked-in .proto, and the
.proto keeps the message and field numbers stock Open Inference Protocol clients send.

(The generated modules are compared as files, never imported here: they register `inference.*`
in the process's protobuf descriptor pool, as tritonclient's modules do, and the two cannot be
imported into one process.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import churn_mlops

pytestmark = pytest.mark.timeout(60)

SRC = Path(churn_mlops.__file__).resolve().parents[1]
PROTO = Path("churn_mlops/api/v2/proto/grpc_predict_v2.proto")
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py")


def test_regenerating_the_grpc_modules_gives_the_checked_in_files(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SRC}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(SRC / PROTO),
        ],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name in GENERATED:
        fresh = (tmp_path / PROTO.parent / name).read_text()
        checked_in = (SRC / PROTO.parent / name).read_text()
        assert fresh == checked_in, f"{name} differs from protoc's output: regenerate it"


def test_the_proto_numbers_fields_as_the_stock_clients_do(tmp_path: Path) -> None:
    """tritonclient's compiled `inference` messages carry the same field numbers (its service
    has more RPCs; the messages this server uses must match field for field)."""
    code = """
import json, sys
from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from tritonclient.grpc import service_pb2
def fields(descriptor):
    return {f.name: (f.number, f.type, f.label) for f in descriptor.fields}
ours = descriptor_pb2.FileDescriptorSet()
out = sys.argv[2]
assert protoc.main(["protoc", "-I" + sys.argv[1], "--include_imports",
                    "--descriptor_set_out=" + out, sys.argv[3]]) == 0
ours.ParseFromString(open(out, "rb").read())
mismatched = []
def walk(message, prefix):
    name = prefix + message.name
    theirs = service_pb2.DESCRIPTOR.pool.FindMessageTypeByName(name)
    mine = {f.name: (f.number, f.type, f.label) for f in message.field}
    stock = fields(theirs)
    if any(stock.get(field) != spec for field, spec in mine.items()) or (not mine and stock):
        mismatched.append(name)
    for nested in message.nested_type:
        if not nested.options.map_entry:
            walk(nested, name + ".")
for message in ours.file[0].message_type:
    walk(message, "inference.")
print(json.dumps(mismatched))
"""
    result = subprocess.run(
        [sys.executable, "-c", code, str(SRC), str(tmp_path / "set.pb"), str(SRC / PROTO)],
        capture_output=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "[]", result.stdout
