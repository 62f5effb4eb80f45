"""Every alarm of deploy/terraform links a runbook that exists and says what the alarm means,
what to look at first and what to do (docs/runbooks/<name>.md). The links are planned
values in the module suites (`terraform test`); here every alarm of every module is found,
so a new alarm without a runbook fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.terraform.tfmodel import REPO, load_module, module_dirs

RUNBOOKS = REPO / "docs" / "runbooks"
LINK = re.compile(
    r"\$\{(?:var\.runbook_base_url)\}/([a-z0-9-]+)\.md|format\(local\.runbook, \"([a-z0-9-]+)\"\)"
)
SECTIONS = ("## What it means", "## Look first", "## What to do")

# Every resource that alerts someone or moves capacity on a condition.
ALARM_TYPES = {
    "aws_cloudwatch_metric_alarm": "alarm_description",
    "aws_cloudwatch_event_rule": "description",
}


def alarms() -> list[tuple[str, str, str]]:
    """(where, resource, description expression) of every alarm in every module."""
    found = []
    for path in module_dirs():
        mod = load_module(path)
        for (rtype, name), body in mod.resources.items():
            if rtype in ALARM_TYPES:
                found.append((path.name, f"{rtype}.{name}", str(body.get(ALARM_TYPES[rtype], ""))))
    return found


def linked(description: str) -> list[str]:
    return [a or b for a, b in LINK.findall(description)]


def test_there_are_alarms() -> None:
    assert len(alarms()) >= 15


@pytest.mark.parametrize("alarm", alarms(), ids=lambda a: f"{a[0]}:{a[1]}")
def test_alarm_links_an_existing_runbook(alarm: tuple[str, str, str]) -> None:
    where, resource, description = alarm
    names = linked(description)
    assert names, f"{where}: {resource} has no runbook link in its description"
    for name in names:
        assert (RUNBOOKS / f"{name}.md").is_file(), f"{resource} links a missing {name}.md"


@pytest.mark.parametrize("path", sorted(RUNBOOKS.glob("*.md")), ids=lambda p: p.name)
def test_runbook_has_its_sections(path: Path) -> None:
    if path.name == "README.md":
        text = path.read_text()
        listed = set(re.findall(r"\]\(([a-z0-9-]+)\.md\)", text))
        files = {p.stem for p in RUNBOOKS.glob("*.md")} - {"README"}
        assert listed == files, f"README lists {sorted(listed)}, the folder has {sorted(files)}"
        return
    text = path.read_text()
    missing = [s for s in SECTIONS if s not in text]
    assert not missing, f"{path.name} lacks {missing}"
    for section in re.split(r"\n## ", text)[1:]:
        assert len(section.split("\n", 1)[-1].strip()) > 40, f"{path.name}: an empty section"


def test_every_runbook_link_resolves() -> None:
    for path in RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([a-z0-9-]+\.md)\)", path.read_text()):
            assert (RUNBOOKS / target).is_file(), f"{path.name} links a missing {target}"
