"""`make run` turns auth off only when no credentials are given (the api fails closed)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRINT = "print-auth: ; @echo $(QF_AUTH_DISABLED)"


def make_says(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QF_AUTH_")}
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", PRINT, "print-auth"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def test_make_run_disables_auth_only_without_credentials() -> None:
    assert make_says() == "true"
    assert make_says(QF_AUTH_API_KEYS="k1") == "false"
    assert make_says(QF_AUTH_JWT_SECRET="s" * 32) == "false"
    assert make_says(QF_AUTH_INVALIDATE_KEYS="op") == "false"
