"""The README documents every setting the code reads, with its default."""

from __future__ import annotations

import re
from pathlib import Path

from queuefront.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    documented = set(re.findall(r"^\| `(QF_[A-Z0-9_]+)` \|", README, flags=re.M))
    settings = {f"QF_{name.upper()}" for name in Settings.model_fields}
    assert settings - documented == set(), "settings missing from the README"
    assert documented - settings == set(), "README documents settings the code does not read"


def test_readme_has_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
