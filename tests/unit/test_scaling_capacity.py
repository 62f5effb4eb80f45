"""The capacity model (bench/scaling/capacity.py) is computed from the measured figures and
the Terraform, so new figures or a new policy change it without a code change, and it
names the limit a load reaches first."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from bench.scaling.capacity import SECONDS_PER_MONTH, Mix, level, main
from bench.scaling.figures import FIGURES_PATH, ThroughputFigures
from bench.scaling.terraform import load_policy


def doubled_api_cpu(tmp_path: Path) -> ThroughputFigures:
    raw = json.loads(FIGURES_PATH.read_text())
    for path in raw["paths"].values():
        if "api" in path["cpu_ms_per_request"]:  # not the direct path's (the backend only)
            path["cpu_ms_per_request"]["api"] *= 2
    out = tmp_path / "throughput.json"
    out.write_text(json.dumps(raw))
    return ThroughputFigures.load(out)


def test_the_api_fleet_follows_the_measured_cpu(tmp_path: Path) -> None:
    policy = load_policy()
    figures = ThroughputFigures.load(FIGURES_PATH)
    base = level(50_000, Mix(), policy, figures)
    heavier = level(50_000, Mix(), policy, doubled_api_cpu(tmp_path))
    assert heavier.tasks["api"] >= 2 * base.tasks["api"] - 1
    assert heavier.usd_per_month["fargate_api"] > base.usd_per_month["fargate_api"]
    # the rest of the figures are unchanged
    assert heavier.tasks["worker"] == base.tasks["worker"]


def test_the_policy_sets_the_floors_and_the_limits() -> None:
    figures = ThroughputFigures.load(FIGURES_PATH)
    small = level(10, Mix(), load_policy(), figures)
    policy = load_policy()
    assert small.tasks == {s: policy.services[s].min_tasks for s in ("api", "worker", "writer")}
    tight = level(
        50_000, Mix(), load_policy({"worker_min_tasks": 1, "worker_max_tasks": 2}), figures
    )
    assert any("worker: 4 tasks needed, worker_max_tasks = 2" in n for n in tight.next_limits)


def test_the_first_limit_of_50000_a_second_is_api_gateways_quota() -> None:
    lv = level(50_000, Mix(), load_policy(), ThroughputFigures.load(FIGURES_PATH))
    assert lv.api_gateway_rps > 10_000
    assert "API Gateway" in lv.next_limits[0]
    assert not level(1_000, Mix(), load_policy(), ThroughputFigures.load(FIGURES_PATH)).next_limits


def test_a_mix_without_writes_stores_nothing() -> None:
    lv = level(
        10_000,
        replace(Mix(), ingest=0.0, edge=0.7),
        load_policy(),
        ThroughputFigures.load(FIGURES_PATH),
    )
    assert lv.flows["votes"] == 0 and lv.postgres_commits_per_s == 0


def test_cli_prints_the_table(capsys: object) -> None:
    assert main(["--rates", "1000", "50000"]) == 0
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "| 1,000 requests/s | 50,000 requests/s |" in out and "$/month total" in out


def test_the_edge_is_priced_at_its_tiers_with_both_web_acls_and_the_nlb() -> None:
    figures = ThroughputFigures.load(FIGURES_PATH)
    lv = level(50_000, Mix(), load_policy(), figures)
    month = lv.api_gateway_rps * SECONDS_PER_MONTH
    # REST's monthly tiers: well below a flat $3.50 a million at ~53 billion requests
    assert lv.usd_per_month["api_gateway"] < 0.6 * month * 3.5e-6
    assert lv.usd_per_month["api_gateway"] > month * 1.51e-6
    # CloudFront's web ACL sees every viewer request, the stage's what reaches API Gateway
    assert lv.usd_per_month["waf"] >= round((50_000 * SECONDS_PER_MONTH + month) * 0.6e-6)
    assert lv.usd_per_month["nlb"] > 0
    direct = level(50_000, Mix(), load_policy({"ingest_direct": True}), figures)
    assert direct.tasks["api"] <= lv.tasks["api"]
    assert direct.sqs_calls_per_s > lv.sqs_calls_per_s  # one SendMessage a vote, unpacked
