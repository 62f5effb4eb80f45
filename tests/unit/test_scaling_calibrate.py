"""The simulator's calibration against ``make sla`` (bench/scaling/machine.py and
calibrate.py): its configuration is the SLA benchmark's own — read from bench.sla, the
stack's environment, the settings and the demo route table, never typed copies — and a
level is simulated and compared as the benchmark counts it."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from bench import sla
from bench.scaling import calibrate, machine
from bench.scaling.figures import ThroughputFigures
from bench.scaling.machine import MachineConstants
from bench.sla_stats import LevelSummary
from devstack import new_stack_env
from queuefront.routes import load_routes
from queuefront.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def figures() -> ThroughputFigures:
    return ThroughputFigures.load()


def test_the_machine_is_the_sla_benchmarks() -> None:
    args = machine.sla_args()
    assert vars(args) == vars(sla.parse_args([]))
    backend = machine.backend(args, MachineConstants())
    assert backend.slots == sla.BACKEND_WORKERS == args.backend_workers
    assert backend.service_s == args.backend_service_ms / 1000
    assert backend.collapse and backend.knee == args.backend_knee
    policy = machine.machine_policy(args)
    worker, api = policy.services["worker"].settings, policy.services["api"].settings
    assert worker["worker_concurrency"] == args.worker_concurrency
    # what the stack sets (one api process, no anonymous rate limit), the rest the defaults
    assert api["api_processes"] == int(new_stack_env({})["QF_API_PROCESSES"])
    for name in ("max_pending_replies", "listen_backlog", "backlog_poll_s", "admission_wait_s"):
        assert api[name] == Settings.model_fields[name].default
    item = load_routes(ROOT / "config" / "routes.toml").get("item")
    assert policy.reply_window_s == item.timeout_s
    assert machine.machine_aws(args, MachineConstants()).api_gateway_timeout_s == (
        sla.API_GATEWAY_LIMIT_S
    )
    model = machine.machine_model(args)
    assert not model.autoscaling and not model.api_gateway and not model.cloudfront
    assert (model.api_tasks, model.worker_tasks, model.api_processes) == (1, 1, 1)
    assert not policy.target_tracking and not policy.step_policies and not policy.scheduled


def test_a_changed_benchmark_setting_changes_the_machine() -> None:
    args = sla.parse_args(["--backend-workers", "10", "--backend-service-ms", "50"])
    backend = machine.backend(args, MachineConstants())
    assert (backend.slots, backend.service_s, backend.knee) == (10, 0.05, 40)
    settings = machine.machine_policy(args).services["worker"].settings
    assert settings["worker_concurrency"] == 20  # the benchmark's half the knee


def test_a_level_is_n_requests_evenly_over_the_window() -> None:
    args, m = machine.sla_args(), MachineConstants()
    sc = machine.level_scenario(args, m, "queued", 3_500)
    assert sc.cumulative("queued", args.window_s) == pytest.approx(3_500)
    assert sc.cumulative("queued", sc.duration_s) == pytest.approx(3_500)
    assert sc.cumulative("cached", sc.duration_s) == 0
    assert sc.duration_s > args.window_s + args.client_timeout_s
    assert sc.step_s == m.step_s


def test_below_capacity_everything_passes(figures: ThroughputFigures) -> None:
    args = machine.sla_args()
    row = machine.predict_level(args, MachineConstants(), "queued", 20_000, figures)
    assert row.n == row.ok == 20_000 and row.passed
    assert row.share("503") == 0
    # a queue delivery and one backend call, nothing waits
    service_ms = args.backend_service_ms + MachineConstants().sqs_delivery_s * 1000
    assert service_ms <= row.p99_ms < service_ms + 20


def test_past_capacity_the_backend_stays_busy_and_the_rest_is_refused(
    figures: ThroughputFigures,
) -> None:
    args = machine.sla_args()
    row = machine.predict_level(args, MachineConstants(), "queued", 120_000, figures)
    assert row.n == sum(row.outcomes.values())  # every request accounted for
    capacity = args.backend_workers * 1000 / args.backend_service_ms
    assert row.goodput_per_s == pytest.approx(capacity, rel=0.05)
    assert row.share("503") > 0.5 and "504" not in row.outcomes
    cached = machine.predict_level(args, MachineConstants(), "cached", 120_000, figures)
    assert cached.ok == cached.n and cached.passed


TRANSCRIBED = calibrate.RECORDED.parent / "sla-3c029eb.json"
"""The 2026-12-02 run, transcribed from its tables (its summary.json was not kept)."""


def test_the_recorded_run_agrees_with_the_simulator_on_every_measured_row(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The run docs/scaling/calibration.md shows (2026-12-07, its own summary.json): a
    change to the simulator that moves goodput or shed share past 20 % of it fails here."""
    run = calibrate.MeasuredRun.load(calibrate.RECORDED)
    assert run.row("queued", 45_000) is not None
    assert calibrate.main(["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    measured = [row for row in rows if row.get("agrees") is not None]
    assert len(measured) == 15, rows
    assert all(row["agrees"] for row in measured), [r for r in measured if not r["agrees"]]


def test_the_transcribed_run_is_read_as_bench_sla_parsed_it() -> None:
    run = calibrate.MeasuredRun.load(TRANSCRIBED)
    raw = json.loads(TRANSCRIBED.read_text())
    assert vars(run.args) == vars(sla.parse_args(raw["argv"]))
    assert set(run.args.levels) <= set(sla.DEFAULT_LEVELS)
    assert run.overload_level == 74_702  # the table's 1,245/s for 60 s
    row = run.row("queued", 45_000)
    assert row is not None and (row.ok, row.share("503")) == (41_381, 3_619 / 45_000)
    overload = run.overload[0]
    assert overload.path == "queued" and round(overload.goodput_per_s) == 621


def summary_file(tmp_path: Path, args: argparse.Namespace, rows: list[LevelSummary]) -> Path:
    """A summary.json as bench.sla.report writes it."""
    path = tmp_path / "summary.json"
    path.write_text(
        json.dumps(
            {
                "args": vars(args),
                "capacity": {
                    "backend_nominal_per_s": 100.0,
                    "backend_measured_per_s": 95.0,
                    "queued_measured_per_s": 97.0,
                },
                "capacity_used_per_s": 97.0,
                "levels": [r.to_json() for r in rows],
                "overload": [],
            },
            allow_nan=True,
        )
    )
    return path


def level(path: str, per_min: int, ok: int, shed: int) -> LevelSummary:
    nan = math.nan
    return LevelSummary(
        path, per_min, 60.0, 20.0, ok + shed, ok + shed, ok, {"200": ok, "503": shed},
        nan, 60.0, 60.0, 60.0, nan, nan, nan, nan, 0,
    )  # fmt: skip


def test_a_summary_json_compares_level_by_level(tmp_path: Path, figures: ThroughputFigures) -> None:
    args = sla.parse_args(["--levels", "1200", "60000", "--paths", "queued", "--no-overload"])
    # at 60,000/min the measured side served what a 95/s backend serves, and shed nothing
    rows_in = [level("queued", 1_200, 1_200, 0), level("queued", 60_000, 95 * 60, 0)]
    run = calibrate.MeasuredRun.load(summary_file(tmp_path, args, rows_in))
    m = calibrate.machine_constants(run, "measured", None)
    assert m.backend_call_s == pytest.approx(args.backend_workers / 95.0)
    rows = calibrate.compare(run, m, figures)
    assert [(c.path, c.level_per_min, c.overload) for c in rows] == [
        ("queued", 1_200, False),
        ("queued", 60_000, False),
    ]
    assert rows[0].agrees  # all served, nothing shed, on both sides
    assert rows[1].goodput_ratio() == pytest.approx(1.0, rel=0.05)
    assert math.isinf(rows[1].shed_ratio())  # the simulator sheds; the run did not
    assert rows[1].agrees is False  # goodput alone is not agreement
    assert len(calibrate.table(rows)) == 2 + len(rows)


def test_configured_backend_uses_the_service_time(tmp_path: Path) -> None:
    args = sla.parse_args(["--levels", "1200", "--paths", "cached"])
    run = calibrate.MeasuredRun.load(summary_file(tmp_path, args, []))
    assert calibrate.machine_constants(run, "configured", None).backend_call_s is None
    route = calibrate.machine_constants(run, "route", 0.05)
    assert route.backend_call_s == pytest.approx(args.backend_workers / 97.0)
    assert route.step_s == 0.05


def test_the_cli_reports_disagreement_with_status_0_and_errors_with_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = sla.parse_args(["--levels", "60000", "--paths", "queued", "--no-overload"])
    path = summary_file(tmp_path, args, [level("queued", 60_000, 10, 0)])
    assert calibrate.main(["--measured", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"][0]["agrees"] is False
    assert calibrate.main(["--measured", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_a_run_whose_stated_settings_today_s_defaults_do_not_give_is_refused(
    tmp_path: Path,
) -> None:
    raw = json.loads(TRANSCRIBED.read_text())
    assert raw["stated_args"]["worker_concurrency"] == sla.parse_args([]).worker_concurrency
    raw["stated_args"]["backend_workers"] = 21
    path = tmp_path / "run.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(calibrate.MeasuredError, match="backend_workers"):
        calibrate.MeasuredRun.load(path)
