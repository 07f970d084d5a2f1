"""The bench's servers, wrk script and commands, with real processes and real wrk."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from benchmarks.cache_servers import (
    bench_key_prefix,
    cache_servers,
    count_keys,
    remove_keys,
    worker_cache_stats,
)
from benchmarks.cache_workload import (
    FreshTemplate,
    fresh_body,
    fresh_supply,
    fresh_templates,
    warm_bodies,
    write_fresh_templates,
)
from benchmarks.ceilings import FIXED_BODY
from benchmarks.load import Mix, Wrk, write_bodies
from benchmarks.servers import (
    RunningServer,
    ServerError,
    ServerSpec,
    bench_servers,
    churn_service,
    group_members,
    provision_credentials,
    start_server,
    wait_until_idle,
)
from churn_mlops.data import TelcoDataset
from churn_mlops.model.artifact import ModelArtifact
from tests.fixtures.redis_server import require_redis
from tests.fixtures.requests import prediction_bodies

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
# The harness is not installed: it runs from the repository root, as `make bench` runs it.
BENCH = [sys.executable, "-m", "benchmarks"]


def _assert_gone(process: subprocess.Popen[bytes], port: int) -> None:
    assert process.returncode is not None
    # No worker outlived the master (zombies aside: not every container's init reaps them).
    members = group_members(process.pid)
    assert members is not None
    assert [(pid, state) for pid, state, _ in members if state not in "ZX"] == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def test_start_server_runs_the_asgi_ceiling_with_two_workers_and_stops_it(
    tmp_path: Path,
) -> None:
    spec = bench_servers(None)["asgi"]
    with start_server(spec, tmp_path) as server:
        response = httpx.post(server.url("/predict"), content=b'{"x": 1}', timeout=5)
        assert response.status_code == 200
        assert response.content == FIXED_BODY
        assert server.log_path.read_text().count("Application startup complete.") == 2
    _assert_gone(server.process, server.port)


def test_start_server_runs_the_naive_baseline_on_the_model_and_stops_it(
    tmp_path: Path, artifact_dir: Path, artifact: ModelArtifact, dataset: TelcoDataset
) -> None:
    body = prediction_bodies(dataset, 1, start=7)[0]
    expected = artifact.estimator.predict_proba(
        artifact.encoder.encode_columns(dataset.subset([7]).columns)
    )[0, 1]
    with start_server(bench_servers(artifact_dir)["naive"], tmp_path) as server:
        response = httpx.post(server.url("/predict"), json=body, timeout=10)
        assert response.status_code == 200
        assert response.json()["churn_probability"] == float(expected)
        assert response.json()["model_version"] == artifact.version
    _assert_gone(server.process, server.port)


def test_start_server_reports_a_server_that_exits_while_starting(tmp_path: Path) -> None:
    spec = ServerSpec(
        "broken", (sys.executable, "-c", "import sys; print('no model'); sys.exit(3)"), 1, "/"
    )
    with (
        pytest.raises(ServerError, match=r"broken exited with 3 while starting:\nno model"),
        start_server(spec, tmp_path, timeout=30),
    ):
        pass


def test_start_server_stops_the_server_when_the_bench_is_interrupted(tmp_path: Path) -> None:
    started: list[RunningServer] = []

    def interrupted_bench() -> None:
        with start_server(bench_servers(None)["asgi"], tmp_path) as server:
            started.append(server)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted_bench()
    _assert_gone(started[0].process, started[0].port)


def test_wrk_run_against_the_asgi_ceiling_counts_every_answer(
    wrk: Wrk, tmp_path: Path, dataset: TelcoDataset
) -> None:
    bodies = write_bodies(
        tmp_path / "bodies.jsonl", (orjson.dumps(b) for b in prediction_bodies(dataset, 100))
    )
    with start_server(bench_servers(None)["asgi"], tmp_path / "logs") as server:
        result = wrk.run(server.port, "/predict", bodies, connections=1, duration_s=1)
    assert result.requests > 0
    assert result.statuses == {200: result.requests}
    assert result.failed == 0
    assert result.errors == {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    latency = result.latency_ms
    assert 0 < latency["p50"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]


class _RecordingServer(ThreadingHTTPServer):
    """Answers 200 to every POST and records (client port, body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.received: list[tuple[int, bytes]] = []


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as wrk expects
    server: _RecordingServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.client_address[1], body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[_RecordingServer]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_wrk_script_cycles_through_the_bodies_from_a_different_start_per_thread(
    wrk: Wrk, tmp_path: Path, recording_server: _RecordingServer
) -> None:
    bodies = [b'{"customer":%d}' % i for i in range(4)]
    path = write_bodies(tmp_path / "bodies.jsonl", bodies)
    port = recording_server.server_address[1]
    result = wrk.run(port, "/predict", path, connections=2, threads=2, duration_s=1)

    by_connection: dict[int, list[bytes]] = {}
    for client_port, body in recording_server.received:
        by_connection.setdefault(client_port, []).append(body)
    assert len(by_connection) == 2
    # Thread 1 starts half-way through; thread 0 at the second body, because wrk calls the first
    # thread's request() once to check the script before any connection opens.
    assert {sent[0] for sent in by_connection.values()} == {bodies[1], bodies[2]}
    for sent in by_connection.values():
        start = bodies.index(sent[0])
        assert sent == [bodies[(start + i) % 4] for i in range(len(sent))]
    assert result.requests <= len(recording_server.received)
    assert result.statuses == {200: result.requests}


def test_wrk_mix_interleaves_warm_bodies_with_fresh_ones_numbered_per_thread(
    wrk: Wrk, tmp_path: Path, recording_server: _RecordingServer
) -> None:
    warm = [b'{"warm":0}', b'{"warm":1}']
    templates = [
        FreshTemplate(b'{"t":0,"charge":', 1_985, b"}"),
        FreshTemplate(b'{"t":1,"charge":', 2, b',"x":"y"}'),
        FreshTemplate(b'{"t":2,"charge":', 11_875, b"}"),
    ]
    mix = Mix("fw", write_fresh_templates(tmp_path / "fresh.tsv", templates), first_fresh=5)
    port = recording_server.server_address[1]
    bodies = write_bodies(tmp_path / "warm.jsonl", warm)
    result = wrk.run(port, "/predict", bodies, connections=2, threads=2, duration_s=1, mix=mix)

    # Three templates make 2,997 fresh bodies; then the script starts over, as `fresh_body` does.
    supply = fresh_supply(templates)
    numbers = {fresh_body(templates, n): n for n in range(supply)}
    by_connection: dict[int, list[bytes]] = {}
    for client_port, body in recording_server.received:
        by_connection.setdefault(client_port, []).append(body)
    assert len(by_connection) == 2
    firsts = set()
    for sent in by_connection.values():
        # One connection per thread: its requests follow the schedule, fresh and warm in turn.
        kinds = "".join("w" if body in warm else "f" for body in sent)
        assert "ww" not in kinds
        assert "ff" not in kinds
        mine = [numbers[body] for body in sent if body not in warm]
        # Thread t sends 5 + t, 5 + t + 2, ...
        assert mine == [(mine[0] + 2 * i) % supply for i in range(len(mine))]
        firsts.add(mine[0])
        assert result.fresh_span >= 2 * len(mine)
    # Thread 0 starts at 7: wrk's check of the script took 5.
    assert firsts == {6, 7}
    assert result.cached == 0  # the recording server answers no `"cached":true`


def test_wrk_sends_the_services_api_key_only_when_given(
    wrk: Wrk, tmp_path: Path, artifact_dir: Path, dataset: TelcoDataset
) -> None:
    bodies = write_bodies(
        tmp_path / "bodies.jsonl", (orjson.dumps(b) for b in prediction_bodies(dataset, 50))
    )
    spec = churn_service(artifact_dir, workers=1, credentials=provision_credentials(tmp_path))
    with start_server(spec, tmp_path / "logs") as server:
        refused = wrk.run(server.port, "/predict", bodies, connections=2, duration_s=1)
        wait_until_idle(server)
        admitted = wrk.run(
            server.port, "/predict", bodies, connections=2, duration_s=1, api_key=spec.api_key
        )
    assert refused.statuses == {401: refused.requests}
    assert admitted.statuses == {200: admitted.requests}


def test_wrk_counts_the_answers_the_l1_cache_served(
    wrk: Wrk, tmp_path: Path, artifact_dir: Path, dataset: TelcoDataset
) -> None:
    warm = write_bodies(tmp_path / "warm.jsonl", warm_bodies(dataset, 100))
    fresh = write_fresh_templates(tmp_path / "fresh.tsv", fresh_templates(dataset))
    credentials = provision_credentials(tmp_path)
    spec = cache_servers(artifact_dir, workers=1, credentials=credentials)["cache-l1"]
    assert spec.api_key == credentials.api_key
    with start_server(spec, tmp_path / "logs") as server:
        hit = wrk.run(
            server.port, "/predict", warm, connections=4, duration_s=1, api_key=spec.api_key
        )
        wait_until_idle(server)
        (after_hit,) = worker_cache_stats(server)
        mix = Mix("fw", fresh, first_fresh=0)
        mixed = wrk.run(
            server.port,
            "/predict",
            warm,
            connections=4,
            duration_s=1,
            mix=mix,
            api_key=spec.api_key,
        )
        wait_until_idle(server)
        (stats,) = worker_cache_stats(server)
    # The one worker computed each of the 100 warm customers once and served it from then on;
    # requests that came while the same customer was being computed waited for it (joined).
    assert hit.statuses == {200: hit.requests}
    assert after_hit["computed"] == 100
    assert hit.cached >= hit.requests - 100 - after_hit["joined"]
    assert hit.cached > 0.9 * hit.requests
    # Warm and fresh customers in turn: half the answers come from the cache.
    assert mixed.statuses == {200: mixed.requests}
    assert 0.45 < mixed.cached_ratio < 0.55
    assert mixed.fresh_span >= mixed.requests // 2
    # The server counts the answers wrk had no time to read too.
    assert stats["l1"]["hits"] >= hit.cached + mixed.cached
    assert stats["l1"]["size"] >= 100 + mixed.requests - mixed.cached - 4


def test_remove_keys_deletes_the_bench_prefix_and_nothing_else() -> None:
    url = require_redis()
    client = redis.Redis.from_url(url)
    prefix = bench_key_prefix()
    neighbours = [f"{prefix}x:v1:0", f"other:{prefix}:v1:0"]
    try:
        client.mset({f"{prefix}:v1:{i:032x}": b"1" for i in range(2_500)})
        client.mset(dict.fromkeys(neighbours, b"1"))
        assert remove_keys(url, prefix) == 2_500
        assert count_keys(url, prefix) == 0
        assert client.exists(*neighbours) == 2
    finally:
        client.delete(*neighbours)
        remove_keys(url, prefix)
        client.close()


@pytest.mark.slow
def test_bench_command_runs_the_cache_suite_and_deletes_its_redis_keys(
    wrk: Wrk, tmp_path: Path, artifact_dir: Path
) -> None:
    url = require_redis()
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            *BENCH,
            "cache",
            "--only",
            "cache-l2",
            "--cache-connections",
            "4",
            "--duration",
            "1s",
            "--warmup",
            "0",
            "--redis-url",
            url,
            "--model-dir",
            str(artifact_dir),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == (out / "report.md").read_text()
    for row in (
        "| hit path | L1 + L2 (Redis) | 4 | 100% | ",
        "| mixed | L1 + L2 (Redis) | 4 | 50% | ",
    ):
        assert row in completed.stdout
    assert "| L1 + L2 (Redis) | after warming | " in completed.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["command"] == (
        "python -m benchmarks cache --duration 1s --warmup 0s --rounds 1 --only cache-l2 "
        "--cache-connections 4 --hit-ratio 0.5"
    )
    prefix = results["meta"]["redis_key_prefix"]
    assert prefix.startswith("churn-bench-")
    assert results["meta"]["redis_keys_removed"] > 0
    assert count_keys(url, prefix) == 0
    mixed = [r["result"] for r in results["runs"] if r["scenario"] == "mixed"]
    assert all(0.3 < result["cached"] / result["requests"] < 0.7 for result in mixed)


def test_bench_command_measures_the_asgi_ceiling_and_writes_the_results(
    wrk: Wrk, tmp_path: Path
) -> None:
    out = tmp_path / "results"
    completed = subprocess.run(
        [
            *BENCH,
            "service",
            "--only",
            "asgi",
            "--connections",
            "1",
            "--duration",
            "1s",
            "--warmup",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr
    assert "| raw ASGI (ceiling) | 1 | " in completed.stdout
    assert completed.stdout == (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    assert [(r["scenario"], r["server"], r["connections"]) for r in results["runs"]] == [
        ("predict", "asgi", 1)
    ]
    assert results["runs"][0]["result"]["requests"] > 0
    assert (out / "latency.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "logs" / "asgi.log").exists()


def test_bench_command_stops_its_servers_on_sigterm(wrk: Wrk, tmp_path: Path) -> None:
    out = tmp_path / "results"
    command = [*BENCH, "service", "--only", "asgi", "--duration", "30s", "--warmup", "0", "--out"]
    with subprocess.Popen(
        [*command, str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("started raw ASGI"):
                break
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 128 + signal.SIGTERM
    assert "Stopping parent process" in (out / "logs" / "asgi.log").read_text()
