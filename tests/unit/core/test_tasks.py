"""cancel_and_wait: a task that will not stop does not hold the caller past its limit, and the
caller's own cancellation (a shutdown deadline) is never mistaken for the task's."""

from __future__ import annotations

import asyncio

import pytest

from churn_mlops.core.tasks import cancel_and_wait

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


async def _stubborn(release: asyncio.Event) -> None:
    """Clean-up that waits (a last write to a database that does not answer)."""
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.shield(release.wait())


async def test_a_task_that_stops_on_cancel_is_waited_for() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    assert await cancel_and_wait(task, limit_seconds=5.0)
    assert task.cancelled()


async def test_a_task_that_does_not_stop_is_left_past_the_limit() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_stubborn(release))
    await asyncio.sleep(0)
    assert not await cancel_and_wait(task, limit_seconds=0.1)
    assert not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    release = asyncio.Event()
    task = asyncio.create_task(_stubborn(release))
    await asyncio.sleep(0)
    # A shutdown deadline shorter than the task's stop limit: it fires, and is not absorbed.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await cancel_and_wait(task, limit_seconds=3600)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_error_the_task_ended_with_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("flush failed") from None

    task = asyncio.create_task(fails_on_cancel(), name="flusher")
    await asyncio.sleep(0)
    assert await cancel_and_wait(task, limit_seconds=5.0)
    assert "background task flusher failed" in caplog.text
    assert "flush failed" in caplog.text


async def test_no_task_is_nothing_to_stop() -> None:
    assert await cancel_and_wait(None, limit_seconds=0.1)
