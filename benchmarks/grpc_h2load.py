"""gRPC `ModelInfer` load from h2load (nghttp2's HTTP/2 benchmark, in C), as wrk loads REST.

The Python gRPC client of `benchmarks.v2_clients` spends more CPU per call than the server it
measures (65 % of a core for 2,500 calls/s here), on the same 2 cores: it measures the client
as much as the server. h2load sends gRPC's HTTP/2 requests itself: a POST to the method's path
with `content-type: application/grpc`, `te: trailers`, the credentials as metadata, and a body
that is one length-prefixed message (gRPC's framing: a compressed flag and a 4-byte big-endian
length). Each h2load process sends one customer's message (it has one body file); there are
several processes, each with its own customer, and with the prediction cache off in this suite
every call is scored anyway.

h2load counts HTTP statuses, but a refused gRPC call is HTTP 200 with its `grpc-status` in the
trailers. So the server's own count of the gRPC route by status (`churn_http_requests_total`
in `/metrics`, which counts gRPC calls with the HTTP status of their outcome) is read before
and after a run: a call it counted with any status but 200 is a failure of the run.
"""

from __future__ import annotations

import re
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from benchmarks.constants import HOST
from benchmarks.v2_bodies import GRPC_INFER_METHOD
from benchmarks.v2_clients import ClientResult

STREAMS_PER_CONNECTION = 4
_REQUESTS_LINE = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded")
_COUNTED = re.compile(
    r'^churn_http_requests_total\{(?=[^}]*route="' + re.escape(GRPC_INFER_METHOD) + r'")'
    r'[^}]*status="(\d+)"[^}]*\} ([0-9.e+]+)$',
    re.MULTILINE,
)
_METRICS_REFRESH_S = 1.5
"""Workers add their counts to the shared metrics every second (CHURN_METRICS_REFRESH_SECONDS)."""


def h2load_path() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise RuntimeError("h2load is not installed: `make tools` installs nghttp2-client")
    return path


def framed(message: bytes) -> bytes:
    """A gRPC message as the HTTP/2 body carries it: not compressed, its length, the bytes."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def counted_calls(rest_port: int) -> dict[str, int]:
    """The server's count of `ModelInfer` calls by HTTP status of their outcome."""
    return calls_by_status(httpx.get(f"http://{HOST}:{rest_port}/metrics", timeout=10).text)


def calls_by_status(text: str) -> dict[str, int]:
    """`ModelInfer` counts by status in a Prometheus text exposition."""
    counts: dict[str, int] = {}
    for status, value in _COUNTED.findall(text):
        counts[status] = counts.get(status, 0) + int(float(value))
    return counts


def _command(port: int, body: Path, log: Path, connections: int, seconds: float) -> list[str]:
    return [
        h2load_path(),
        "--duration",
        f"{seconds:g}",
        "--clients",
        str(connections),
        "--max-concurrent-streams",
        str(STREAMS_PER_CONNECTION),
        "--data",
        str(body),
        "--log-file",
        str(log),
        "--header",
        "content-type: application/grpc",
        "--header",
        "te: trailers",
    ]


def _latencies_us(log: Path) -> list[int]:
    """Each answered call's time from h2load's log (start, status, microseconds per line)."""
    latencies = []
    for line in log.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].startswith("2"):
            latencies.append(int(parts[2]))
    return latencies


def run_h2load(
    port: int,
    rest_port: int,
    messages: Sequence[bytes],
    *,
    processes: int,
    streams: int,
    duration_s: int,
    api_key: str | None,
) -> ClientResult:
    """`processes` h2load processes, each with one of `messages`, `streams` calls in flight in
    all (`STREAMS_PER_CONNECTION` per connection), for `duration_s`; failures are the calls the
    server counted with another status than 200."""
    connections = max(1, -(-streams // (STREAMS_PER_CONNECTION * processes)))
    before = counted_calls(rest_port)
    cpu_before = _children_cpu_s()
    with tempfile.TemporaryDirectory(prefix="churn-h2load-") as work:
        children = []
        for index in range(processes):
            body = Path(work, f"body-{index}.bin")
            body.write_bytes(framed(messages[index % len(messages)]))
            command = _command(port, body, Path(work, f"log-{index}.tsv"), connections, duration_s)
            if api_key:
                command += ["--header", f"x-api-key: {api_key}"]
            command.append(f"http://{HOST}:{port}{GRPC_INFER_METHOD}")
            children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))  # noqa: S603
        succeeded, latencies = 0, []
        for index, child in enumerate(children):
            stdout, _ = child.communicate(timeout=duration_s + 60)
            found = _REQUESTS_LINE.search(stdout)
            if child.returncode != 0 or found is None:
                raise RuntimeError(f"h2load failed: {stdout[-2000:]}")
            succeeded += int(found.group(3))
            latencies += _latencies_us(Path(work, f"log-{index}.tsv"))
        cpu_s = _children_cpu_s() - cpu_before
    time.sleep(_METRICS_REFRESH_S)
    after = counted_calls(rest_port)
    counted = {status: n - before.get(status, 0) for status, n in after.items()}
    if sum(counted.values()) < succeeded:
        raise RuntimeError(
            f"the server counted {sum(counted.values())} ModelInfer calls in /metrics, h2load "
            f"{succeeded}: the calls' gRPC statuses cannot be checked"
        )
    refused = sum(n for status, n in counted.items() if status != "200")
    return ClientResult(max(0, succeeded - refused), refused, duration_s, cpu_s, latencies)


def _children_cpu_s() -> float:
    """CPU seconds of this process's finished children (h2load's, once it has been waited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
