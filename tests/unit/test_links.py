"""Every relative link in the README and the docs resolves: the file (or folder) exists,
and a ``#anchor`` names a heading of the page it points to, as GitHub renders it."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(
    {
        ROOT / "README.md",
        ROOT / "bench" / "README.md",
        ROOT / "deploy" / "terraform" / "README.md",
        *(ROOT / "docs").rglob("*.md"),
    }
)

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=\"([^\"]*)\"", re.I)
HTML_ANCHOR = re.compile(r"<[a-z]+\b[^>]*?\b(?:id|name)=\"([^\"]+)\"", re.I)
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where nothing is a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def links(text: str) -> list[str]:
    prose = _prose(text)
    return [
        *INLINE_LINK.findall(prose),
        *REFERENCE.findall(prose),
        *HTML_LINK.findall(prose),
    ]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text lower-cased, punctuation dropped,
    spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: Counter[str] = Counter()
    found: set[str] = set()
    for _, heading in HEADING.findall(FENCE.sub("", text)):
        base = slug(heading)
        found.add(base if seen[base] == 0 else f"{base}-{seen[base]}")
        seen[base] += 1
    return found | set(HTML_ANCHOR.findall(text))


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Every relative link of ``page`` that leads nowhere, with the reason."""
    text = page.read_text()
    problems = []
    for target in links(text):
        if not target or EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        destination = (page.parent / unquote(path_part)).resolve() if path_part else page
        if root.resolve() not in (destination, *destination.parents):
            problems.append(f"{target}: outside the repository")
        elif not destination.exists():
            problems.append(f"{target}: no such file")
        elif (
            anchor
            and destination.suffix == ".md"
            and unquote(anchor).lower() not in anchors(destination.read_text())
        ):
            problems.append(f"{target}: no heading #{anchor} in {destination.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_pages_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in PAGES}
    assert {"README.md", "docs/configuration.md", "docs/runbooks/README.md"} <= names


def test_a_broken_link_or_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Every `CPU` of a task\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Title\n\n## Quick start\n\n"
        "[ok](docs/other.md#every-cpu-of-a-task) [ok](#quick-start) [ok](docs/)\n"
        "[web](https://example.com/x) `[in code](nowhere.md)`\n\n"
        "```\n[in a block](nowhere.md)\n```\n\n"
        "[gone](docs/missing.md) [bad anchor](docs/other.md#no-such-heading) "
        "[bad local](#nowhere) ![img](docs/missing.png)\n\n[ref]: ../../outside.md\n"
    )
    assert broken_links(page, tmp_path) == [
        "docs/missing.md: no such file",
        "docs/other.md#no-such-heading: no heading #no-such-heading in other.md",
        "#nowhere: no heading #nowhere in README.md",
        "docs/missing.png: no such file",
        "../../outside.md: outside the repository",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Every CPU of a task", "every-cpu-of-a-task"),
        ("SLA: the kiosk's table", "sla-the-kiosks-table"),
        ("Compose and AWS, side by side", "compose-and-aws-side-by-side"),
        ("`QF_API_PROCESSES` and more", "qf_api_processes-and-more"),
        (
            "Observability: CloudWatch, not Amazon Managed Service for Prometheus",
            "observability-cloudwatch-not-amazon-managed-service-for-prometheus",
        ),
        ("compose ↔ AWS", "compose--aws"),
    ],
)
def test_anchors_follow_github(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
