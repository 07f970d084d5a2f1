"""The README is part of the product: it must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from churn_mlops.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_table_lists_every_setting_and_nothing_else() -> None:
    documented = set(re.findall(r"^\| `(CHURN_[A-Z0-9_]+)` \|", README, flags=re.MULTILINE))
    assert documented == {f"CHURN_{name.upper()}" for name in Settings.model_fields}


def test_every_setting_has_a_docstring() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no docstring"


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert "make serve" in README
    assert "make test" in README
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line and not line.startswith("#")]
    assert commands[-1] == "make test"
