"""Stopping a background task at shutdown without hanging on it or swallowing the caller's
own cancellation.

`task.cancel()` then `with suppress(CancelledError): await task` has two faults: a task whose
clean-up waits (a last write to a database that drops packets) holds the shutdown as long as it
likes, and a cancellation of the caller itself (a shutdown deadline) arriving during that await
is suppressed as if it were the task's, so the deadline never fires.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

logger = logging.getLogger(__name__)

STOP_SECONDS = 5.0
"""What a background task gets to stop at shutdown, unless its owner says otherwise."""


async def cancel_and_wait(
    task: asyncio.Task[Any] | None, limit_seconds: float = STOP_SECONDS
) -> bool:
    """Cancel `task` and wait up to `limit_seconds` for it to end; whether it ended. Past the
    limit it is left to finish on its own (logged). An error it ended with is logged, not
    raised: the rest of the shutdown still runs."""
    if task is None:
        return True
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=limit_seconds)
    if not done:
        logger.warning(
            "background task %s did not stop within %g s; leaving it",
            task.get_name(),
            limit_seconds,
        )
        return False
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("background task %s failed", task.get_name(), exc_info=error)
    return True
