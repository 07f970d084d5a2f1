"""`make loadtest`: start a seeded server, run the Locust scenario headless against it, and exit
with Locust's verdict (non-zero past the error ratio or the p95 SLO).

    .venv/bin/python -m tests.load.run_loadtest --users 20 --spawn-rate 10 --duration 30s

The server is `churn-mlops serve` on a free loopback port, with a SQLite database in a temporary
directory, migrated and seeded with the shipped customers (`churn-mlops db upgrade`, `db seed`),
and a user made with `churn-mlops users create`, whom every Locust user logs in as. `--host`
runs against a server that is already up instead (credentials from the environment, see
locustfile.py). Locust runs as a subprocess: it monkey-patches its process with gevent.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from benchmarks.load import parse_duration
from benchmarks.servers import churn_service, log_tail, start_server
from churn_mlops.model.provisioning import ensure_model, training_source
from churn_mlops.settings import Settings

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
CLI = [sys.executable, "-m", "churn_mlops.cli"]
USERNAME = "loadtest"


def _run(command: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    result = subprocess.run(
        command, env=env, input=stdin, capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[2:])} failed:\n{result.stdout}\n{result.stderr}")


def prepare_server_env(work: Path) -> tuple[dict[str, str], dict[str, str]]:
    """A migrated, seeded database with a user; (server environment, Locust credentials)."""
    password = secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "CHURN_ENVIRONMENT": "test",
        "CHURN_DATABASE_URL": f"sqlite:///{work / 'churn.db'}",
        "CHURN_PREDICTION_LOG_SPILL_PATH": str(work / "spill" / "predictions.jsonl"),
        # Shared by every worker: a token one worker signs verifies in the others.
        "CHURN_JWT_SECRET": secrets.token_urlsafe(48),
        "CHURN_API_KEY_PEPPER": secrets.token_urlsafe(48),
    }
    _run([*CLI, "db", "upgrade"], env)
    _run([*CLI, "db", "seed"], env)
    _run(
        [*CLI, "users", "create", USERNAME, "--scope", "predict,read", "--password-stdin"],
        env,
        stdin=password + "\n",
    )
    server_env = {k: v for k, v in env.items() if k.startswith("CHURN_")}
    return server_env, {"CHURN_LOADTEST_USERNAME": USERNAME, "CHURN_LOADTEST_PASSWORD": password}


def run_locust(
    host: str,
    users: int,
    spawn_rate: float,
    duration: str,
    p95_ms: float,
    max_error_ratio: float,
    credentials: dict[str, str],
    csv_prefix: Path | None = None,
) -> int:
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(spawn_rate),
        "--run-time",
        duration,
        "--host",
        host,
        "--stop-timeout",
        "5",
        "--only-summary",
    ]
    if csv_prefix is not None:
        command += ["--csv", str(csv_prefix)]
    env = {
        **os.environ,
        **credentials,
        "CHURN_LOADTEST_P95_MS": str(p95_ms),
        "CHURN_LOADTEST_MAX_ERROR_RATIO": str(max_error_ratio),
    }
    print(f"locust: {users} users for {duration} against {host}", flush=True)
    timeout = parse_duration(duration) + 120
    return subprocess.run(command, env=env, timeout=timeout, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Locust scenario against a seeded server.")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", default="30s", help="Locust --run-time: 30s, 2m ...")
    parser.add_argument("--p95-ms", type=float, default=500.0, help="SLO: p95 of all requests")
    parser.add_argument("--max-error-ratio", type=float, default=0.001)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--host", default=None, help="an already running server instead")
    parser.add_argument("--csv", type=Path, default=None, help="Locust CSV prefix")
    args = parser.parse_args(argv)
    if args.host:
        return run_locust(
            args.host,
            args.users,
            args.spawn_rate,
            args.duration,
            args.p95_ms,
            args.max_error_ratio,
            {},
            args.csv,
        )
    model_dir = (args.model_dir or Settings().model_dir).resolve()
    ensure_model(model_dir, training_source(Settings()), "loadtest")
    with tempfile.TemporaryDirectory(prefix="churn-loadtest-") as work_name, ExitStack() as stack:
        work = Path(work_name)
        print("preparing a seeded database and a user", flush=True)
        server_env, credentials = prepare_server_env(work)
        spec = churn_service(model_dir, workers=args.workers, env=server_env, name="loadtest")
        server = stack.enter_context(start_server(spec, work / "logs"))
        print(f"server up on {server.url()} ({args.workers} workers)", flush=True)
        code = run_locust(
            server.url().rstrip("/"),
            args.users,
            args.spawn_rate,
            args.duration,
            args.p95_ms,
            args.max_error_ratio,
            credentials,
            args.csv,
        )
        if code != 0:
            print("server log tail:\n" + log_tail(server.log_path), flush=True)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
