"""The `timed` marker's list (tests/conftest.py TIMED) names tests that exist: a file renamed or
moved out of it would otherwise run beside another test under `make test`, and its time bounds
would measure the neighbour."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TIMED

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entry", TIMED)
def test_every_timed_entry_names_a_test_file_or_a_directory(entry: str) -> None:
    path = ROOT / entry
    if entry.endswith("/"):
        assert path.is_dir(), entry
        assert any(path.rglob("test_*.py")), entry
    else:
        assert path.is_file(), entry
        assert path.name.startswith("test_"), entry


def test_the_timed_tests_carry_the_marker(request: pytest.FixtureRequest) -> None:
    session = request.session
    timed = [item for item in session.items if item.get_closest_marker("timed")]
    # This run may hold any subset of the suite; of what it holds, exactly TIMED's are marked.
    for item in session.items:
        relative = item.path.relative_to(ROOT).as_posix()
        assert (item in timed) == relative.startswith(TIMED), relative
