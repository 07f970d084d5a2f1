"""Starts a server under test as a real uvicorn process tree and stops it again.

Each server gets a free loopback port, its own log file and a process group of its own: Ctrl-C
in the terminal reaches the bench only, which then stops every server in order, and whatever a
server leaves behind is killed with its group.
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.constants import HOST, WORKERS
from benchmarks.terminal import console

# The folder holding the `benchmarks` package: uvicorn imports the bench's own apps
# (`benchmarks.ceilings:...`) from it, whatever the directory the bench was started in.
_HARNESS_ROOT = Path(__file__).resolve().parent.parent
# uvicorn logs this once per worker when the app's lifespan start-up is done; the master binds the
# socket before it forks, so one answering worker does not mean that all of them are up.
_WORKER_READY = "Application startup complete."


class ServerError(RuntimeError):
    """A server under test did not start or died."""


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test; `--port N` is appended to `argv`."""

    name: str
    argv: tuple[str, ...]
    workers: int
    ready_path: str
    """Polled with GET until it answers below 500."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Added to the bench's own environment (e.g. `CHURN_CACHE_ENABLED=false`)."""
    api_key: str | None = None
    """Sent as `X-API-Key` with every request to this server (our service; the others ignore it)."""


@dataclass(frozen=True)
class BenchCredentials:
    """A database of the bench's own holding one API key, and the secrets to verify it."""

    env: Mapping[str, str]
    """CHURN_DATABASE_URL, CHURN_API_KEY_PEPPER, CHURN_JWT_SECRET (random for each bench), a
    CHURN_DEV_API_KEY_FILE in the bench's work directory, and rate limits no load reaches;
    never written to a report."""
    api_key: str


def provision_credentials(
    work_dir: Path, scopes: str = "predict,read,admin", *, database_url: str | None = None
) -> BenchCredentials:
    """Create an API key with `churn-mlops keys create`, as an operator would, in
    `database_url` (a migrated database) or else a SQLite database under `work_dir`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "CHURN_DATABASE_URL": database_url
        or f"sqlite:///{work_dir.resolve() / 'bench-credentials.db'}",
        "CHURN_API_KEY_PEPPER": secrets.token_urlsafe(48),
        "CHURN_JWT_SECRET": secrets.token_urlsafe(48),
        # `serve` in development creates a key of its own: keep it out of the checkout's var/.
        "CHURN_DEV_API_KEY_FILE": str(work_dir.resolve() / "dev-api-key"),
        # Rows the bench's database cannot take in time spill here, never into the checkout's
        # var/, where a later `serve` would replay them into another database.
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(
            work_dir.resolve() / "prediction-log" / "predictions.jsonl"
        ),
        # The bench's one key sends far more than a caller's default share: the limiter still
        # runs on every request (its cost is measured) but never refuses one.
        "CHURN_RATE_LIMIT_PER_SECOND": "1000000000",
        "CHURN_RATE_LIMIT_BURST": "1000000000",
    }
    result = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "churn_mlops.cli",
            "keys",
            "create",
            "--name",
            # A name of this run's own: a database kept between runs (the production
            # server's) holds the earlier runs' keys, made with other peppers.
            f"bench-{secrets.token_hex(4)}",
            "--scope",
            scopes,
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise ServerError(f"could not create the bench's API key:\n{result.stderr[-2000:]}")
    return BenchCredentials(env, lines[-1])


def uvicorn_server(
    name: str,
    factory: str,
    *,
    workers: int = WORKERS,
    ready_path: str = "/",
    env: Mapping[str, str] | None = None,
) -> ServerSpec:
    """An app factory (`module:function`) under uvicorn with uvloop and httptools; the
    `benchmarks` package is importable in it (`PYTHONPATH`), as the product does not ship it."""
    argv = (
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--workers",
        str(workers),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--host",
        HOST,
    )
    return ServerSpec(name, argv, workers, ready_path, {**harness_importable(), **(env or {})})


def harness_importable() -> dict[str, str]:
    """`PYTHONPATH` for a child process that imports `benchmarks`."""
    paths = [str(_HARNESS_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}


def churn_service(
    model_dir: Path,
    *,
    workers: int = WORKERS,
    env: Mapping[str, str] | None = None,
    name: str = "service",
    credentials: BenchCredentials | None = None,
) -> ServerSpec:
    """Our service, started the way users start it: `churn-mlops serve`; with `credentials`,
    its database holds their key and every request sends it."""
    argv = (
        sys.executable,
        "-m",
        "churn_mlops.cli",
        "serve",
        "--workers",
        str(workers),
        "--host",
        HOST,
        "--model-dir",
        str(model_dir),
    )
    # `serve` hands its log level to uvicorn, and the readiness check counts uvicorn's INFO lines.
    secured = dict(credentials.env) if credentials else {}
    return ServerSpec(
        name,
        argv,
        workers,
        "/health/ready",
        {**(env or {}), **secured, "CHURN_LOG_LEVEL": "INFO"},
        credentials.api_key if credentials else None,
    )


def bench_servers(
    model_dir: Path | None,
    *,
    workers: int = WORKERS,
    service_env: Mapping[str, str] | None = None,
    credentials: BenchCredentials | None = None,
) -> dict[str, ServerSpec]:
    """The servers the service suite compares, by the names `--only` takes.

    Without a model directory, only the two ceilings, which need no model.
    """
    servers = {
        # GET on a POST-only route answers 405 once the app is up.
        "fastapi": uvicorn_server(
            "fastapi",
            "benchmarks.ceilings:create_fastapi_app",
            workers=workers,
            ready_path="/predict",
        ),
        "asgi": uvicorn_server("asgi", "benchmarks.ceilings:create_asgi_app", workers=workers),
    }
    if model_dir is not None:
        servers["naive"] = uvicorn_server(
            "naive",
            "benchmarks.naive:create_app_from_env",
            workers=workers,
            ready_path="/health",
            env={"CHURN_MODEL_DIR": str(model_dir)},
        )
        servers["service"] = churn_service(
            model_dir, workers=workers, env=service_env, credentials=credentials
        )
    return servers


@dataclass(frozen=True)
class RunningServer:
    """A started server: where it listens, its process and its log."""

    spec: ServerSpec
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status < 500
    except OSError:
        return False
    finally:
        connection.close()


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_ready(server: RunningServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(
                f"{server.spec.name} exited with {server.process.returncode} while starting:\n"
                + log_tail(server.log_path)
            )
        started = server.log_path.read_text(errors="replace").count(_WORKER_READY)
        if started >= server.spec.workers and _answers(server.port, server.spec.ready_path):
            return
        time.sleep(0.2)
    raise ServerError(
        f"{server.spec.name} was not ready after {timeout:.0f} s:\n" + log_tail(server.log_path)
    )


def _process_stats() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command, the fields after the parenthesised command) of every process in /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process has gone
            continue
        command = text[text.index("(") + 1 : text.rindex(")")]
        yield int(stat.parent.name), command, text[text.rindex(")") + 2 :].split()


def group_members(process_group: int) -> list[tuple[int, str, int]] | None:
    """(pid, state, CPU clock ticks) of each process in a group; None without Linux's /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    # Fields after the command: state, ppid, pgrp, ... utime (14), stime (15).
    return [
        (pid, fields[0], int(fields[11]) + int(fields[12]))
        for pid, _, fields in _process_stats()
        if int(fields[2]) == process_group
    ]


def postgres_cpu_seconds() -> float:
    """CPU time every local PostgreSQL process used so far, the backends that have exited
    included (the postmaster's children's time); 0 without /proc or PostgreSQL."""
    # utime, stime, then cutime, cstime: the reaped children, the backends gone.
    ticks = sum(
        sum(int(field) for field in fields[11:15])
        for _, command, fields in _process_stats()
        if command == "postgres"
    )
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(process_group: int) -> float | None:
    members = group_members(process_group)
    if members is None:
        return None
    return sum(ticks for _, _, ticks in members) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(
    server: RunningServer, *, busy_below: float = 0.05, window: float = 0.5, timeout: float = 60
) -> float:
    """Wait until the server's processes use less than `busy_below` of a core; seconds waited.

    A server keeps working on the requests a finished wrk run left queued (uvicorn does not
    cancel them); on shared cores that work would be charged to the next server measured.
    """
    began = time.monotonic()
    before = _cpu_seconds(server.process.pid)
    while before is not None and time.monotonic() - began < timeout:
        time.sleep(window)
        after = _cpu_seconds(server.process.pid)
        if after is None or after - before < busy_below * window:
            break
        before = after
    return time.monotonic() - began


def settle(server: RunningServer, after: str) -> None:
    """Wait until the server has answered what the last run left queued."""
    with console.status(f"waiting for {server.spec.name} to finish the requests left queued"):
        waited = wait_until_idle(server)
    if waited > 2:
        console.print(f"  {server.spec.name} stayed busy for {waited:.1f} s after the {after}")


def check_alive(server: RunningServer) -> None:
    if server.process.poll() is not None:
        raise ServerError(
            f"{server.spec.name} died (exit {server.process.returncode}):\n"
            + log_tail(server.log_path)
        )


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is None:
        # uvicorn's master stops its workers gracefully on SIGINT, as on Ctrl-C.
        process.send_signal(signal.SIGINT)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the group is ours alone (start_new_session)
    process.wait(timeout=grace)
    # A killed worker runs on for a moment before it exits: the next server measured must not
    # share the cores with it.
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        members = group_members(process.pid)
        if not members or all(state in "ZX" for _, state, _ in members):
            return
        time.sleep(0.05)


@contextmanager
def start_server(
    spec: ServerSpec, log_dir: Path, *, timeout: float = 120, grace: float = 15
) -> Iterator[RunningServer]:
    """Start `spec` on a free port, wait until every worker is ready, stop it on exit."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{spec.name}.log"
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            [*spec.argv, "--port", str(port)],
            env={**os.environ, **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = RunningServer(spec, port, process, log_path)
    try:
        _wait_ready(server, timeout)
        yield server
    finally:
        _stop(process, grace)
