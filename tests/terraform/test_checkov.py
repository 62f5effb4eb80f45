"""checkov finds nothing on deploy/terraform, and every check it is told to skip says why.

checkov cannot share the project's environment (it pins packaging<24 and a boto3 whose
botocore excludes aiobotocore's), so it lives in its own virtualenv; the test runs it as a
subprocess found, in order, at $CHECKOV, .venv-checkov/bin/checkov, next to this Python,
or on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.terraform.tfmodel import REPO, TF_ROOT

SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def checkov_command() -> list[str]:
    candidates = [
        os.environ.get("CHECKOV", ""),
        str(REPO / ".venv-checkov" / "bin" / "checkov"),
        str(Path(sys.executable).parent / "checkov"),
        shutil.which("checkov") or "",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return [candidate]
    raise AssertionError(
        "checkov not found: install it in its own venv "
        "(python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov==3.3.30) "
        "or point $CHECKOV at it"
    )


def run_checkov(directory: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [
            *checkov_command(),
            "-d",
            str(directory),
            "--framework",
            "terraform",
            "--compact",
            "--quiet",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.stdout.strip(), (
        f"checkov printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    )
    report = json.loads(proc.stdout)
    if isinstance(report, list):  # one report per framework
        (report,) = [r for r in report if r.get("check_type") == "terraform"]
    assert isinstance(report, dict)
    return report


def test_checkov_finds_no_failed_check() -> None:
    report = run_checkov(TF_ROOT)
    summary = report["summary"]
    failed = report["results"].get("failed_checks", [])
    listing = "\n".join(
        f"{f['check_id']} {f['resource']} ({f['file_path']}): {f['check_name']}" for f in failed
    )
    assert summary["failed"] == 0, f"checkov failed checks:\n{listing}"
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 200, summary
    assert summary["resource_count"] > 100, summary


def test_every_skip_is_justified() -> None:
    skips = []
    for tf in sorted(TF_ROOT.rglob("*.tf")):
        for n, line in enumerate(tf.read_text().splitlines(), 1):
            for check_id, reason in SKIP.findall(line):
                skips.append((f"{tf.relative_to(TF_ROOT)}:{n}", check_id, reason.strip()))
    assert skips, "expected the justified skips to be found"
    unjustified = [f"{where} {check_id}" for where, check_id, reason in skips if len(reason) < 20]
    assert not unjustified, f"skips without a reason: {unjustified}"


def test_checkov_fails_insecure_terraform(tmp_path: Path) -> None:
    """The check can fail: an unencrypted, public queue policy is reported."""
    (tmp_path / "main.tf").write_text(
        'resource "aws_sqs_queue" "open" {\n  name = "open"\n  sqs_managed_sse_enabled = false\n}\n'
    )
    report = run_checkov(tmp_path)
    assert report["summary"]["failed"] >= 1
