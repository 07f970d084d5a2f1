"""Where the bench talks to its operator: progress on stderr, so that stdout carries only the
report (`python -m benchmarks service > report.md`)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def log(text: str) -> None:
    """One line of progress, never wrapped (the figures stay on one line)."""
    console.print(text, soft_wrap=True)
