"""Drives a server with wrk: many distinct customers, a bounded run, one JSON result line.

wrk (C, epoll) costs the machine far less than the servers it loads, so the figures show the
servers and not the load generator; it still shares the machine's cores with them, which makes
every figure a lower bound. Latencies are wrk's: from writing a request to reading its answer on
a kept-alive connection, in microseconds, without correction for coordinated omission.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.constants import HOST, WRK_THREADS
from churn_mlops.data import TelcoDataset

WRK_INSTALL_HINT = "install it with `apt-get install -y wrk` (or `brew install wrk`)"
RESULT_MARKER = "WRK_RESULT "
SOCKET_ERRORS = ("connect", "read", "write", "timeout")

# Per-thread Lua states: each wrk thread loads the bodies and counts its own statuses; `setup`
# runs in the main state, which keeps the thread handles so that `done` can add their counts.
# A mix (the cache's workloads) follows a schedule of "w" (the next body of the file) and "f"
# (a fresh body, never sent before, made here: `cache_workload.fresh_body` is its reference).
# Thread t of T sends fresh numbers first + t, first + t + T, ...; `done` reports how many
# numbers the run used up, so that the next run starts after them.
WRK_SCRIPT = r"""
local threads = {}

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

-- args: the bodies file (one JSON document per line), the number of threads; for a mix, the
-- schedule, the fresh templates file ("prefix TAB cents TAB suffix" lines) and the first number.
function init(args)
  headers = {["Content-Type"] = "application/json"}
  -- The service's API key comes through the environment, never the command line.
  local api_key = os.getenv("CHURN_BENCH_API_KEY")
  if api_key and #api_key > 0 then
    headers["X-API-Key"] = api_key
  end
  requests = {}
  for line in io.lines(args[1]) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", nil, headers, line)
    end
  end
  if #requests == 0 then
    error("no request bodies in " .. args[1])
  end
  thread_count = tonumber(args[2])
  -- Threads start at different bodies so that they never send the same one at once (the
  -- first thread one body later: wrk calls its request() once to check the script).
  position = (thread_index * math.floor(#requests / thread_count)) % #requests
  statuses = {}
  cached = 0
  schedule = args[3] or "w"
  step = 0
  templates = {}
  fresh_sent = 0
  if args[4] then
    for line in io.lines(args[4]) do
      local prefix, cents, suffix = string.match(line, "^(.-)\t(%d+)\t(.*)$")
      if prefix then
        templates[#templates + 1] = {prefix, tonumber(cents), suffix}
      end
    end
    first_fresh = tonumber(args[5])
  end
  if string.find(schedule, "f", 1, true) and #templates == 0 then
    error("the schedule sends fresh bodies but no templates were given")
  end
end

local function fresh_request()
  local n = first_fresh + thread_index + fresh_sent * thread_count
  fresh_sent = fresh_sent + 1
  local template = templates[n % #templates + 1]
  -- The charge in units of 1e-5 dollars: whole cents, plus 1 to 999 units.
  local units = template[2] * 1000 + math.floor(n / #templates) % 999 + 1
  local charge = string.format("%d.%05d", math.floor(units / 100000), units % 100000)
  return wrk.format("POST", nil, headers, template[1] .. charge .. template[3])
end

function request()
  step = step % #schedule + 1
  if string.byte(schedule, step) == 102 then -- "f"
    return fresh_request()
  end
  position = position % #requests + 1
  return requests[position]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if body and string.find(body, '"cached":true', 1, true) then
    cached = cached + 1
  end
end

function done(summary, latency, requests)
  local statuses = {}
  local cached, most_fresh = 0, 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      statuses[status] = (statuses[status] or 0) + count
    end
    cached = cached + thread:get("cached")
    most_fresh = math.max(most_fresh, thread:get("fresh_sent"))
  end
  local codes = {}
  for status, count in pairs(statuses) do
    codes[#codes + 1] = string.format('"%d":%d', status, count)
  end
  local latencies = {}
  for _, p in ipairs({50, 90, 95, 99, 99.9}) do
    latencies[#latencies + 1] = string.format('"p%g":%.0f', p, latency:percentile(p))
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%.0f,"duration_us":%.0f,"bytes":%.0f,' ..
    '"errors":{"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f},' ..
    '"statuses":{%s},"cached":%.0f,"fresh_span":%.0f,' ..
    '"latency_us":{%s,"max":%.0f,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    table.concat(codes, ","), cached, most_fresh * #threads,
    table.concat(latencies, ","), latency.max, latency.mean))
end
"""


class LoadError(RuntimeError):
    """wrk is missing, failed, or printed no result."""


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    duration_s: float
    errors: dict[str, int]
    """wrk's counters: connect, read, write, status (answers of 400 and above) and timeout
    (answers slower than `--timeout`, left out of the latencies; wrk looks every 2 s)."""
    statuses: dict[int, int]
    """Answers per HTTP status code."""
    latency_ms: dict[str, float]
    """p50, p90, p95, p99, p99.9, max and mean."""
    cached: int = 0
    """Answers marked `"cached":true`: served by the prediction cache."""
    fresh_span: int = 0
    """Fresh body numbers the run used up (a mix only); the next run starts after them."""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def cached_ratio(self) -> float:
        """The share of answers that came from the prediction cache."""
        return self.cached / self.requests if self.requests else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)

    @property
    def failed(self) -> int:
        """Requests that got no answer or an answer other than 2xx."""
        return self.non_2xx + sum(self.errors.get(name, 0) for name in SOCKET_ERRORS)

    @property
    def attempts(self) -> int:
        """Answers, plus requests that a connect, read or write error left unanswered."""
        return self.requests + sum(
            self.errors.get(name, 0) for name in ("connect", "read", "write")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "duration_s": self.duration_s,
            "rps": self.rps,
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "cached": self.cached,
            "fresh_span": self.fresh_span,
            "latency_ms": self.latency_ms,
        }


def parse_wrk_output(stdout: str) -> LoadResult:
    """The result line that `WRK_SCRIPT`'s `done` printed among wrk's own output."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            document = json.loads(line[len(RESULT_MARKER) :])
            break
    else:
        raise LoadError(f"wrk printed no {RESULT_MARKER.strip()} line:\n{stdout[-2000:]}")
    latency_us: dict[str, float] = document["latency_us"]
    return LoadResult(
        requests=int(document["requests"]),
        duration_s=document["duration_us"] / 1e6,
        errors={name: int(count) for name, count in document["errors"].items()},
        statuses={int(status): int(count) for status, count in document["statuses"].items()},
        latency_ms={name: value / 1000 for name, value in latency_us.items()},
        # Absent from the output of scripts older than the cache's workloads.
        cached=int(document.get("cached", 0)),
        fresh_span=int(document.get("fresh_span", 0)),
    )


def prediction_bodies(dataset: TelcoDataset, count: int) -> list[bytes]:
    """`/predict` bodies of `count` customers, all different while `count <= len(dataset)`."""
    ids, rows = dataset.customer_ids, list(dataset.feature_rows())
    return [
        orjson.dumps({"customer_id": ids[i % len(ids)], "features": rows[i % len(rows)]})
        for i in range(count)
    ]


def batch_bodies(dataset: TelcoDataset, rows: int, count: int) -> list[bytes]:
    """`count` different `/predict/batch` bodies of `rows` customers each."""
    singles = prediction_bodies(dataset, len(dataset))
    # Each batch starts at another customer, so that no two batches are the same.
    step = max(len(singles) // count, 1)
    return [
        b"[" + b",".join(singles[(b * step + i) % len(singles)] for i in range(rows)) + b"]"
        for b in range(count)
    ]


def write_bodies(path: Path, bodies: Iterable[bytes]) -> Path:
    """One body per line, as the wrk script reads them."""
    with path.open("wb") as file:
        for body in bodies:
            if b"\n" in body:
                raise ValueError("a request body must fit on one line")
            file.write(body + b"\n")
    return path


def parse_duration(text: str) -> int:
    """Whole seconds from `10`, `10s`, `2m` or `1h` (wrk's own units)."""
    units = {"s": 1, "m": 60, "h": 3600}
    text = text.strip().lower()
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        seconds = int(number) * units[unit]
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 10s, 2m or 1h") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


@dataclass(frozen=True)
class Mix:
    """Bodies of the file interleaved with fresh ones (see `benchmarks.cache_workload`)."""

    schedule: str
    """`w` for the next body of the file, `f` for a fresh one; repeated by every thread."""
    templates: Path
    """Fresh body templates, as `cache_workload.write_fresh_templates` writes them."""
    first_fresh: int
    """Number of the first fresh body this run may send."""


class Wrk:
    """Runs wrk with `WRK_SCRIPT` against a loopback port; every run is bounded in time."""

    def __init__(self, work_dir: Path, executable: str | None = None) -> None:
        found = executable or shutil.which("wrk")
        if found is None:
            raise LoadError(f"wrk is not installed: {WRK_INSTALL_HINT}")
        self.executable = found
        self.script = work_dir / "bench.lua"
        self.script.write_text(WRK_SCRIPT)

    def version(self) -> str:
        """wrk's version line, for the report."""
        result = subprocess.run(  # noqa: S603 - wrk, found on PATH, with our arguments
            [self.executable, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        # "wrk 4.2.0 [epoll] Copyright (C) 2012 Will Glozer" -> "wrk 4.2.0 [epoll]"
        first_line = next(iter((result.stdout or result.stderr).splitlines()), "")
        return first_line.split(" Copyright")[0]

    def run(
        self,
        port: int,
        path: str,
        bodies: Path,
        *,
        connections: int,
        duration_s: int,
        threads: int = WRK_THREADS,
        timeout_s: int = 2,
        mix: Mix | None = None,
        api_key: str | None = None,
    ) -> LoadResult:
        """POST the bodies in turn to `http://127.0.0.1:port/path` for `duration_s` seconds;
        with a mix, interleaved with fresh bodies as its schedule says; with `api_key`, every
        request sends it as `X-API-Key`."""
        if duration_s < 1:
            raise ValueError("wrk runs for at least one second")
        threads = max(1, min(threads, connections))
        command: Sequence[str] = [
            self.executable,
            "--threads",
            str(threads),
            "--connections",
            str(connections),
            "--duration",
            f"{duration_s}s",
            "--timeout",
            f"{timeout_s}s",
            "--script",
            str(self.script),
            f"http://{HOST}:{port}{path}",
            "--",
            str(bodies),
            str(threads),
        ]
        if mix is not None:
            if set(mix.schedule) - {"w", "f"} or not mix.schedule:
                raise ValueError(f"a schedule is made of w and f, not {mix.schedule!r}")
            command = [*command, mix.schedule, str(mix.templates), str(mix.first_fresh)]
        try:
            completed = subprocess.run(  # noqa: S603
                command,
                capture_output=True,
                text=True,
                # wrk stops itself after the duration; the margin covers start-up and the last
                # answers, the bound only a wedged run.
                timeout=duration_s + timeout_s + 30,
                check=False,
                env={**os.environ, "CHURN_BENCH_API_KEY": api_key or ""},
            )
        except subprocess.TimeoutExpired:
            raise LoadError(f"wrk did not finish: {' '.join(command)}") from None
        if completed.returncode != 0:
            raise LoadError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
        return parse_wrk_output(completed.stdout)
