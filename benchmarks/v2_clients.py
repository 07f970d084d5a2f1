"""The `v2` suite's load generators for what wrk cannot send: binary V2 bodies (arbitrary bytes,
which wrk's one-body-per-line file cannot carry) over HTTP, and gRPC `ModelInfer` calls.

Both run closed loops for a fixed time (a warm-up first, not counted) and report answers,
failures, latencies and their own CPU time: they share the machine's cores with the server, so
the report shows what the load itself cost. The gRPC client runs in processes of its own
(`python -m benchmarks.v2_clients`), so that its event loop does not compete with the parent's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from benchmarks.constants import HOST
from benchmarks.v2_bodies import GRPC_INFER_METHOD

API_KEY_ENV = "CHURN_BENCH_API_KEY"
STREAMS_PER_CONNECTION = 4
"""Concurrent gRPC calls per HTTP/2 connection of a client process."""


@dataclass(frozen=True)
class ClientResult:
    """One closed-loop run: answers, failures, latencies and the client's own CPU."""

    requests: int
    """Successful answers (HTTP 2xx, gRPC OK) in the measured time."""
    failures: int
    duration_s: float
    cpu_s: float
    """CPU seconds the client processes used in the measured time."""
    latencies_us: list[int] = field(repr=False)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, percent: float) -> float:
        """A latency percentile (nearest rank) in milliseconds; 0 without answers."""
        if not self.latencies_us:
            return 0.0
        ordered = sorted(self.latencies_us)
        rank = min(len(ordered) - 1, max(0, round(percent / 100 * len(ordered)) - 1))
        return ordered[rank] / 1000


def merge(results: Sequence[ClientResult]) -> ClientResult:
    """Processes that ran side by side for the same time: their sums, over the longest time."""
    return ClientResult(
        requests=sum(r.requests for r in results),
        failures=sum(r.failures for r in results),
        duration_s=max((r.duration_s for r in results), default=0.0),
        cpu_s=sum(r.cpu_s for r in results),
        latencies_us=[latency for r in results for latency in r.latencies_us],
    )


class _Loop:
    """Shared state of one closed-loop run: a clock and the counters."""

    def __init__(self, warmup_s: float, duration_s: float) -> None:
        now = time.perf_counter()
        self.measure_from = now + warmup_s
        self.stop_at = self.measure_from + duration_s
        self.requests = 0
        self.failures = 0
        self.latencies_us: list[int] = []

    def record(self, began: float, ok: bool) -> None:
        if began < self.measure_from:
            return
        if ok:
            self.requests += 1
            self.latencies_us.append(int((time.perf_counter() - began) * 1e6))
        else:
            self.failures += 1


async def _measured(loop_state: _Loop, workers: Iterable[asyncio.Future[None]]) -> float:
    """Run the workers; the CPU seconds this process spent in the measured part."""
    await asyncio.sleep(max(0.0, loop_state.measure_from - time.perf_counter()))
    cpu_start = time.process_time()
    await asyncio.gather(*workers)
    return time.process_time() - cpu_start


async def post_bodies(
    port: int,
    path: str,
    bodies: Sequence[tuple[bytes, Mapping[str, str]]],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
) -> ClientResult:
    """POST the bodies in turn, `concurrency` at a time (httpx), each on a new connection.

    A 10,000-row request costs milliseconds of a worker's CPU and a connection about 0.1 ms:
    kept-alive connections would stay with the worker that accepted them, and the shared
    listening socket of `serve --workers 2` hands most of a burst of connections to one worker
    (7 of 8 in a check with `x-request-id`), which then measured one worker, not the service."""
    state = _Loop(warmup_s, duration_s)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{port}", limits=limits, timeout=30
    ) as client:

        async def worker(index: int) -> None:
            position = index
            while time.perf_counter() < state.stop_at:
                body, headers = bodies[position % len(bodies)]
                position += concurrency
                began = time.perf_counter()
                try:
                    response = await client.post(path, content=body, headers=dict(headers))
                    ok = response.is_success
                except httpx.HTTPError:
                    ok = False
                state.record(began, ok)

        tasks = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
        cpu_s = await _measured(state, tasks)
    return ClientResult(state.requests, state.failures, duration_s, cpu_s, state.latencies_us)


async def grpc_calls(
    port: int,
    requests: Sequence[bytes],
    *,
    streams: int,
    duration_s: float,
    warmup_s: float,
    api_key: str | None,
) -> ClientResult:
    """Unary `ModelInfer` calls of pre-serialized requests from `streams` concurrent callers,
    `STREAMS_PER_CONNECTION` to an HTTP/2 connection (grpc.aio)."""
    state = _Loop(warmup_s, duration_s)
    metadata = (("x-api-key", api_key),) if api_key else None
    # Several connections, each its own (no shared subchannel pool): every worker of the server
    # listens on the gRPC port (SO_REUSEPORT), and the kernel spreads connections, not calls.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(f"{HOST}:{port}", options=options)
        for _ in range(max(1, -(-streams // STREAMS_PER_CONNECTION)))
    ]
    # No (de)serializers: the requests are bytes already, answers are not decoded.
    calls = [channel.unary_unary(GRPC_INFER_METHOD) for channel in channels]

    async def worker(index: int) -> None:
        infer = calls[index % len(calls)]
        position = index
        while time.perf_counter() < state.stop_at:
            request = requests[position % len(requests)]
            position += streams
            began = time.perf_counter()
            try:
                await infer(request, metadata=metadata, timeout=30)
                ok = True
            except grpc.aio.AioRpcError:
                ok = False
            state.record(began, ok)

    try:
        tasks = [asyncio.ensure_future(worker(i)) for i in range(streams)]
        cpu_s = await _measured(state, tasks)
    finally:
        for channel in channels:
            await channel.close()
    return ClientResult(state.requests, state.failures, duration_s, cpu_s, state.latencies_us)


def write_messages(path: Path, messages: Iterable[bytes]) -> Path:
    """Length-prefixed (4-byte little-endian) messages in one file."""
    with path.open("wb") as file:
        for message in messages:
            file.write(struct.pack("<I", len(message)) + message)
    return path


def read_messages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    messages, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + length > len(data):
            raise ValueError(f"{path}: a message runs past the end of the file")
        messages.append(data[offset : offset + length])
        offset += length
    return messages


def run_grpc_processes(
    port: int,
    requests_file: Path,
    *,
    processes: int,
    streams: int,
    duration_s: int,
    warmup_s: int,
    api_key: str | None,
) -> ClientResult:
    """`processes` client processes of `streams // processes` callers each, merged."""
    per_process = max(1, streams // processes)
    command = [
        sys.executable,
        "-m",
        "benchmarks.v2_clients",
        "--port",
        str(port),
        "--requests",
        str(requests_file),
        "--streams",
        str(per_process),
        "--duration",
        str(duration_s),
        "--warmup",
        str(warmup_s),
    ]
    env = {**os.environ, API_KEY_ENV: api_key or ""}
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # noqa: S603
        for _ in range(processes)
    ]
    results = []
    for child in children:
        try:
            stdout, stderr = child.communicate(timeout=duration_s + warmup_s + 60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise RuntimeError("a gRPC client process did not finish") from None
        if child.returncode != 0:
            raise RuntimeError(f"a gRPC client process failed: {stderr.decode()[-2000:]}")
        document = json.loads(stdout)
        results.append(ClientResult(**document))
    return merge(results)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="gRPC ModelInfer closed-loop client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=0.0)
    args = parser.parse_args(argv)
    result = asyncio.run(
        grpc_calls(
            args.port,
            read_messages(args.requests),
            streams=args.streams,
            duration_s=args.duration,
            warmup_s=args.warmup,
            api_key=os.environ.get(API_KEY_ENV) or None,
        )
    )
    sys.stdout.write(json.dumps(result.__dict__))


if __name__ == "__main__":
    main()
