"""The `v2` suite's parts that need no server: the V2 bodies it sends (checked by decoding them
back as a V2 server must), the gRPC client's message file, the client figures, the round order,
the report's medians and targets, and the command's options."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.service_pb2 as service_pb2  # type: ignore[import-untyped]
from typer.testing import CliRunner

from benchmarks.cli import app
from benchmarks.grpc_h2load import calls_by_status, framed
from benchmarks.v2_bodies import (
    CUSTOMER_ID,
    OUTPUTS,
    batches,
    binary_body,
    datatype_of,
    grpc_request,
    json_body,
    single_rows,
)
from benchmarks.v2_clients import ClientResult, merge, read_messages, write_messages
from benchmarks.v2_report import Measurement, medians, render, table
from benchmarks.v2_suite import BATCH_WORKLOADS, SINGLE_WORKLOADS, build_bodies, round_plan
from churn_mlops.data import TelcoDataset


def _bytes_elements(block: bytes) -> list[str]:
    """A BYTES tensor's binary block: each element a 4-byte little-endian length, then bytes."""
    values, offset = [], 0
    while offset < len(block):
        (length,) = struct.unpack_from("<I", block, offset)
        values.append(block[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return values


def _decode(datatype: str, block: bytes) -> list[object]:
    if datatype == "BYTES":
        return list(_bytes_elements(block))
    dtype = {"INT64": "<i8", "FP64": "<f8"}[datatype]
    return list(np.frombuffer(block, dtype=dtype).tolist())


def _same(value: object, expected: object) -> bool:
    if expected is None:
        return isinstance(value, float) and math.isnan(value)
    return value == expected


def test_datatypes_follow_the_values() -> None:
    assert datatype_of(["Yes", None, "No"]) == "BYTES"
    assert datatype_of([1, 2, 3]) == "INT64"
    assert datatype_of([1, None]) == "FP64"
    assert datatype_of([1.5, 2]) == "FP64"
    assert datatype_of([True, False]) == "FP64"


def test_binary_body_decodes_back_to_the_rows(dataset: TelcoDataset) -> None:
    # The rows with a missing total_charges are among these 5,000: it travels as NaN.
    ids, rows = batches(dataset, 5_000, 1)[0]
    assert any(row["total_charges"] is None for row in rows)
    body, header_length = binary_body(ids, rows)
    header = json.loads(body[:header_length])
    offset = header_length
    names = []
    for tensor in header["inputs"]:
        size = tensor["parameters"]["binary_data_size"]
        values = _decode(tensor["datatype"], body[offset : offset + size])
        offset += size
        assert tensor["shape"] == [len(rows)]
        names.append(tensor["name"])
        expected = ids if tensor["name"] == CUSTOMER_ID else [r[tensor["name"]] for r in rows]
        assert all(_same(v, e) for v, e in zip(values, expected, strict=True)), tensor["name"]
    assert offset == len(body)
    assert names == [*rows[0], CUSTOMER_ID]
    asked = {o["name"]: o["parameters"]["binary_data"] for o in header["outputs"]}
    assert asked == dict.fromkeys(OUTPUTS, True)


def test_json_body_is_one_line_of_v2_inputs(dataset: TelcoDataset) -> None:
    missing = next(
        i for i, row in enumerate(dataset.feature_rows()) if row["total_charges"] is None
    )
    ids, rows = single_rows(dataset, missing + 1)[missing]
    body = json_body(ids, rows)
    assert b"\n" not in body
    inputs = {tensor["name"]: tensor for tensor in json.loads(body)["inputs"]}
    assert inputs[CUSTOMER_ID]["data"] == ids
    assert b'"data":[NaN]' in body
    assert math.isnan(inputs["total_charges"]["data"][0])
    for name, value in rows[0].items():
        assert inputs[name]["shape"] == [1]
        if value is not None:
            assert inputs[name]["data"] == [value]


def test_grpc_request_carries_raw_contents_in_input_order(dataset: TelcoDataset) -> None:
    ids, rows = single_rows(dataset, 3)[2]
    request = service_pb2.ModelInferRequest.FromString(grpc_request(ids, rows))
    assert request.model_name == "churn"
    assert len(request.raw_input_contents) == len(request.inputs) == len(rows[0]) + 1
    for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
        expected = ids[0] if tensor.name == CUSTOMER_ID else rows[0][tensor.name]
        assert list(tensor.shape) == [1]
        assert _same(_decode(tensor.datatype, raw)[0], expected), tensor.name
    assert [output.name for output in request.outputs] == list(OUTPUTS)


def test_message_file_round_trips_and_refuses_a_truncated_one(tmp_path: Path) -> None:
    messages = [b"", b"\n\x00binary\n", bytes(range(256)) * 3]
    path = write_messages(tmp_path / "messages.bin", messages)
    assert read_messages(path) == messages
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="runs past the end"):
        read_messages(path)


def test_client_results_merge_and_give_percentiles() -> None:
    first = ClientResult(100, 1, 2.0, 0.5, [1000 * i for i in range(1, 101)])
    second = ClientResult(50, 0, 2.1, 0.25, [500_000] * 50)
    merged = merge([first, second])
    assert (merged.requests, merged.failures, merged.cpu_s) == (150, 1, 0.75)
    assert merged.rps == pytest.approx(150 / 2.1)
    assert first.percentile_ms(50) == 50.0
    assert first.percentile_ms(99) == 99.0
    assert merged.percentile_ms(99) == 500.0
    assert ClientResult(0, 3, 1.0, 0.1, []).percentile_ms(99) == 0.0


def test_every_workload_goes_first_in_its_group_as_often_as_the_others() -> None:
    plans = [round_plan(r) for r in range(12)]
    for plan in plans:
        assert sorted(plan) == sorted((*SINGLE_WORKLOADS, *BATCH_WORKLOADS))
        assert set(plan[: len(SINGLE_WORKLOADS)]) == set(SINGLE_WORKLOADS)
    firsts = [plan[0] for plan in plans]
    assert {firsts.count(w) for w in SINGLE_WORKLOADS} == {12 // len(SINGLE_WORKLOADS)}
    batch_firsts = [plan[len(SINGLE_WORKLOADS)] for plan in plans]
    assert {batch_firsts.count(w) for w in BATCH_WORKLOADS} == {12 // len(BATCH_WORKLOADS)}


def _measurement(workload: str, round_: int, rps: float, rows: int = 1) -> Measurement:
    client_cpu = 40.0 + round_ if workload == "grpc" else None
    return Measurement(workload, round_, rps, rows, 2.0 + round_, 0, 32, "wrk", client_cpu)


def test_report_gives_medians_ratios_and_targets() -> None:
    runs = [
        *(_measurement("predict", r, rps) for r, rps in enumerate((1000, 900, 1100))),
        *(_measurement("v2-json", r, rps) for r, rps in enumerate((700, 850, 950))),
        *(_measurement("grpc-h2load", r, rps) for r, rps in enumerate((400, 600, 100))),
        *(_measurement("grpc", r, rps) for r, rps in enumerate((200, 300, 100))),
        *(_measurement("batch-json", r, rps, 10_000) for r, rps in enumerate((30, 31, 29))),
        *(_measurement("v2-binary", r, rps, 10_000) for r, rps in enumerate((90, 110, 120))),
    ]
    by_workload = medians(runs)
    assert by_workload["v2-json"].requests_per_s == 850
    assert by_workload["v2-json"].p99_ms == 3.0
    assert by_workload["grpc"].client_cpu_percent == 41.0
    assert by_workload["v2-binary"].rows_per_s == 1_100_000
    lines = {line.split(" | ")[0]: line for line in table(runs)}
    assert "met: 85.0% of predict (>= 80%)" in lines["| V2 JSON infer, 1 row"]
    h2load = lines["| gRPC `ModelInfer`, 1 row (raw contents), h2load"]
    assert "MISSED: 40.0% of predict (>= 50%)" in h2load
    grpcio = lines["| gRPC `ModelInfer`, 1 row (raw contents), grpcio client"]
    assert "41 %" in grpcio
    assert "MISSED" not in grpcio  # the target is read from the C client's row
    binary = lines["| V2 binary infer (binary outputs)"]
    assert "1,100,000" in binary
    assert "3.67x batch-json" in binary
    assert "met: >= 1,000,000 rows/s" in binary
    report = render(runs, {"command": "python -m benchmarks v2 --rounds 3", "rounds": 3})
    assert "`python -m benchmarks v2 --rounds 3`" in report
    assert report.count("\n| 3 | ") == 6


def test_a_slow_binary_run_misses_its_target() -> None:
    runs = [_measurement("v2-binary", 0, 99, 10_000)]
    assert "MISSED: >= 1,000,000 rows/s" in "\n".join(table(runs))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--grpc-processes", "4", "--connections", "2"], "at most one process per"),
        (["--batch-rows", "0"], "greater than or equal to 1"),
        (["--rounds", "0"], "greater than or equal to 1"),
        (["--duration", "soon"], "'soon' is not a duration"),
    ],
)
def test_v2_command_refuses_bad_options(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["v2", *arguments])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_binary_bodies_ask_for_no_compression_as_stock_tritonclient(tmp_path: Path) -> None:
    files = build_bodies(tmp_path, 50, "key-1")
    for _, headers in files.v2_binary:
        # tritonclient.http sends no Accept-Encoding: the outputs come back uncompressed.
        assert headers["Accept-Encoding"] == "identity"
        assert headers["X-API-Key"] == "key-1"
    # Neither batch workload asks for a compressed answer (httpx would ask for gzip).
    assert all(headers["Accept-Encoding"] == "identity" for _, headers in files.batch_json)


def test_the_servers_count_of_grpc_calls_is_read_by_status() -> None:
    metrics = "\n".join(
        [
            "# TYPE churn_http_requests_total counter",
            'churn_http_requests_total{method="GRPC",route="/inference.GRPCInferenceService/'
            'ModelInfer",status="200"} 1234.0',
            'churn_http_requests_total{method="GRPC",route="/inference.GRPCInferenceService/'
            'ModelInfer",status="429"} 7.0',
            'churn_http_requests_total{method="POST",route="/predict",status="200"} 99.0',
        ]
    )
    assert calls_by_status(metrics) == {"200": 1234, "429": 7}
    assert framed(b"abc") == b"\x00\x00\x00\x00\x03abc"
