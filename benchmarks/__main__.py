"""`python -m benchmarks --help` lists the suites."""

from benchmarks.cli import app

app(prog_name="python -m benchmarks")
