"""`churn-mlops profile`: where the time (and memory) of predictions goes, in-process.

The command drives the real prediction pipeline (decode, cache, micro-batcher, model, encode)
without HTTP: concurrent `/predict` bodies, so that the batcher batches as under load, then
`/predict/batch` bodies. The pipeline comes from a factory that `churn_mlops.cli` hands over
(observability never imports serving).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import time
import tracemalloc
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import orjson
import typer
from rich.console import Console
from rich.table import Table

from churn_mlops.settings import Settings

if TYPE_CHECKING:
    from pyinstrument import Profiler

console = Console(stderr=True)


class ProfiledPipeline(Protocol):
    """What `churn-mlops profile` needs of the prediction pipeline."""

    async def predict_one(self, body: bytes) -> bytes: ...
    async def predict_many(self, body: bytes) -> bytes: ...
    def warm_up(self, body: bytes | None = None) -> None: ...
    async def close(self) -> None: ...


PipelineFactory = Callable[[Settings], ProfiledPipeline]


@dataclass(frozen=True)
class FunctionTime:
    """One function's share of a pyinstrument session."""

    function: str
    location: str
    self_seconds: float
    total_seconds: float


def top_functions(frame: Any, limit: int) -> list[FunctionTime]:
    """Aggregate a pyinstrument frame tree by function: time spent in its own code (self) and
    in it including callees (total; a recursive function counts each nesting once)."""
    own: dict[tuple[str, str], float] = {}
    total: dict[tuple[str, str], float] = {}

    def walk(node: Any, open_keys: frozenset[tuple[str, str]]) -> None:
        key = (str(node.function), f"{node.file_path_short}:{node.line_no}")
        if not str(node.function).startswith("["):  # pyinstrument's synthetic frames
            own[key] = own.get(key, 0.0) + float(node.total_self_time)
            if key not in open_keys:
                total[key] = total.get(key, 0.0) + float(node.time)
            open_keys = open_keys | {key}
        for child in node.children:
            walk(child, open_keys)

    if frame is not None:
        walk(frame, frozenset())
    ranked = sorted(own, key=lambda k: own[k], reverse=True)[:limit]
    return [
        FunctionTime(name, where, own[(name, where)], total[(name, where)])
        for name, where in ranked
    ]


def _bodies(requests: int, batch_rows: int) -> tuple[list[bytes], list[bytes]]:
    from churn_mlops.data import load_telco_csv

    dataset = load_telco_csv()
    rows, ids = list(dataset.feature_rows()), dataset.customer_ids
    singles = [
        orjson.dumps({"customer_id": ids[i % len(ids)], "features": rows[i % len(rows)]})
        for i in range(requests)
    ]
    batches = [
        b"[" + b",".join(singles[(start + i) % len(singles)] for i in range(batch_rows)) + b"]"
        for start in range(0, max(len(singles), 1), max(batch_rows, 1))
    ]
    return singles, batches


async def _drive(
    pipeline: ProfiledPipeline, singles: list[bytes], batches: list[bytes], concurrency: int
) -> None:
    for start in range(0, len(singles), concurrency):
        await asyncio.gather(
            *(pipeline.predict_one(b) for b in singles[start : start + concurrency])
        )
    for body in batches:
        await pipeline.predict_many(body)


def _memory_pass(
    pipeline: ProfiledPipeline,
    singles: list[bytes],
    batches: list[bytes],
    concurrency: int,
    out: Path,
    top: int,
) -> None:
    """Run the workload again under tracemalloc (and memray when installed), without
    pyinstrument, whose own frame records would dominate; print the largest allocations."""
    with ExitStack() as stack:
        memray_file = None
        if importlib.util.find_spec("memray") is not None:
            memray = importlib.import_module("memray")  # optional: not a dependency
            memray_file = out.with_suffix(".memray.bin")
            memray_file.unlink(missing_ok=True)
            stack.enter_context(memray.Tracker(memray_file))

        async def run() -> tracemalloc.Snapshot:
            try:
                await _drive(pipeline, singles, batches, concurrency)
                # Before closing the pipeline: what the workload holds, caches included.
                return tracemalloc.take_snapshot()
            finally:
                await pipeline.close()

        tracemalloc.start()
        try:
            snapshot = asyncio.run(run())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    snapshot = snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    table = Table(
        title=f"Top {top} allocations held at the end of the run (peak {peak / 2**20:,.1f} MiB)"
    )
    table.add_column("size", justify="right")
    table.add_column("blocks", justify="right")
    table.add_column("where", overflow="fold")
    for stat in snapshot.statistics("lineno")[:top]:
        frame = stat.traceback[0]
        table.add_row(
            f"{stat.size / 1024:,.1f} KiB", f"{stat.count:,}", f"{frame.filename}:{frame.lineno}"
        )
    Console(width=140).print(table)
    if memray_file is not None:
        console.print(f"memray capture: {memray_file} (render: memray flamegraph {memray_file})")


def _profile_settings(cache: bool, concurrency: int, model_dir: Path | None) -> Settings:
    # Never shed: the profiler (and tracemalloc more so) slows each event-loop turn past the
    # batcher's queue-delay bound, which would refuse predictions instead of profiling them.
    overrides: dict[str, Any] = {
        "cache_enabled": cache,
        "database_url": "",
        "batch_max_queue_delay_ms": 3_600_000.0,
        "batch_max_queue": max(concurrency, Settings.model_fields["batch_max_queue"].default),
    }
    if model_dir is not None:
        overrides["model_dir"] = model_dir.resolve()
    return Settings(**overrides)


def _warm_pipeline(build: PipelineFactory, settings: Settings) -> ProfiledPipeline:
    pipeline = build(settings)
    pipeline.warm_up()  # with the model's schema's example
    return pipeline


def _profiled_run(
    pipeline: ProfiledPipeline, singles: list[bytes], batches: list[bytes], concurrency: int
) -> tuple[Profiler, float]:
    """Run the workload under pyinstrument; the profiler and the seconds the run took."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")

    async def run() -> float:
        began = time.perf_counter()
        try:
            await _drive(pipeline, singles, batches, concurrency)
        finally:
            await pipeline.close()
        return time.perf_counter() - began

    profiler.start()
    try:
        seconds = asyncio.run(run())
    finally:
        profiler.stop()
    return profiler, seconds


def _print_top_functions(profiler: Profiler, seconds: float, top: int) -> None:
    session = profiler.last_session
    root = session.root_frame() if session is not None else None
    table = Table(title=f"Top {top} functions by own time ({seconds:.2f} s in total)")
    table.add_column("function")
    table.add_column("where", overflow="fold")
    table.add_column("own s", justify="right")
    table.add_column("own %", justify="right")
    table.add_column("total s", justify="right")
    duration = session.duration if session is not None else seconds
    for row in top_functions(root, top):
        table.add_row(
            row.function,
            row.location,
            f"{row.self_seconds:.3f}",
            f"{row.self_seconds / duration:.1%}" if duration else "-",
            f"{row.total_seconds:.3f}",
        )
    Console(width=140).print(table)


def profile_command(build: PipelineFactory) -> Callable[..., None]:
    """The `profile` command, running predictions through pipelines that `build` makes."""

    def profile(
        requests: Annotated[int, typer.Option(min=1, help="Single predictions to run.")] = 5_000,
        batch_rows: Annotated[
            int,
            typer.Option(
                min=1, help="Rows per /predict/batch body (one body per that many singles)."
            ),
        ] = 500,
        concurrency: Annotated[
            int, typer.Option(min=1, help="Single predictions in flight at once (batcher batches).")
        ] = 32,
        cache: Annotated[
            bool, typer.Option(help="Use the prediction cache (off: every row reaches the model).")
        ] = False,
        model_dir: Annotated[Path | None, typer.Option(help="Artifact; default: settings.")] = None,
        out: Annotated[Path, typer.Option(help="HTML report to write.")] = Path(
            "var/profile/profile.html"
        ),
        top: Annotated[int, typer.Option(min=1, help="Functions (and allocations) listed.")] = 15,
        memory: Annotated[
            bool,
            typer.Option(
                help="Also report the top allocations (tracemalloc; memray too if installed)."
            ),
        ] = False,
    ) -> None:
        """Profile predictions in-process (single and batch) with pyinstrument: writes an HTML
        report and prints the functions where the time goes."""
        from threadpoolctl import threadpool_limits

        from churn_mlops.model.provisioning import ensure_model, training_source

        settings = _profile_settings(cache, concurrency, model_dir)
        ensure_model(settings.model_dir, training_source(settings), "profile")
        threadpool_limits(limits=settings.model_threads)
        with console.status("loading the model and warming up"):
            pipeline = _warm_pipeline(build, settings)
            singles, batches = _bodies(requests, batch_rows)
        total_rows = len(singles) + len(batches) * batch_rows
        out.parent.mkdir(parents=True, exist_ok=True)
        with console.status(
            f"profiling {len(singles):,} single and {len(batches):,} batch predictions "
            f"({total_rows:,} rows)"
        ):
            profiler, seconds = _profiled_run(pipeline, singles, batches, concurrency)
        out.write_text(profiler.output_html())
        _print_top_functions(profiler, seconds, top)
        console.print(
            f"{len(singles):,} single predictions and {len(batches):,} batches of {batch_rows:,} "
            f"rows in {seconds:.2f} s ({len(singles) / seconds:,.0f} singles/s under the "
            f"profiler, cache {'on' if cache else 'off'}); HTML report: {out}"
        )
        if memory:
            with console.status("memory pass: the same predictions under tracemalloc"):
                fresh = _warm_pipeline(build, settings)
            _memory_pass(fresh, singles, batches, concurrency, out, top)

    return profile
