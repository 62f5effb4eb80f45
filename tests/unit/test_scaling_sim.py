"""The scaling simulator end to end, on small scenarios (seconds in all): every request
is accounted for, a load the system can serve is served, an overload is shed while the
backend stays busy, more tasks never shed more, and the Terraform drives the result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bench.scaling import scenario
from bench.scaling.__main__ import main
from bench.scaling.figures import FIGURES_PATH, ThroughputFigures
from bench.scaling.run import simulate
from bench.scaling.scenario import CLASSES, ScenarioError
from bench.scaling.terraform import TERRAFORM_DIR, load_policy
from tests.unit.scaling_runs import SCENARIOS, shipped


def scenario_of(**raw: Any) -> scenario.Scenario:
    return scenario.parse({"name": "test", **raw})


def assert_conserved(r: dict[str, Any]) -> None:
    assert r["lost"] == 0
    for c in CLASSES:
        accounted = (
            r["answered"][c]
            + r["shed"][c]
            + r["timed_out_by_class"][c]
            + r["in_system_at_end"][c]
            + r["lost_by_class"][c]
        )
        assert r["offered"][c] == accounted, c
    q = r["offered"]["queued"]
    assert q == (
        r["answered"]["queued"]
        + r["shed"]["queued"]
        + r["timed_out"]
        + r["queued_at_end"]
        + r["lost_by_class"]["queued"]
    )
    # every accepted vote is stored or still queued
    assert r["answered"]["ingest"] == (
        r["ingest_stored"] + r["ingest_backlog_at_end"] + r["lost_by_class"]["ingest"]
    )


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_every_shipped_scenario_accounts_for_every_request_and_loses_none(path: Path) -> None:
    r = shipped(path)
    assert sum(r["offered"].values()) > 0
    assert_conserved(r)


FLAT = {
    "duration_s": 600,
    "backend": {"slots": 100, "service_s": 1.0},
    "mix": {"high_share": 0.2, "cached_miss_ratio": 0.1, "edge_objects": 10},
    "load": [{"at_s": 0, "queued_rps": 30, "cached_rps": 100, "edge_rps": 200, "ingest_rps": 50}],
}


def test_a_flat_load_below_capacity_sheds_nothing() -> None:
    # three workers of 32 slots at 1 s per call: 96 calls/s; 30 + 10 (misses) offered
    r = simulate(scenario_of(**FLAT)).result
    assert_conserved(r)
    assert r["shed"] == {c: 0 for c in CLASSES}
    assert r["timed_out_by_class"] == {c: 0 for c in CLASSES}
    assert r["answered"]["queued"] >= r["offered"]["queued"] - r["queued_at_end"]
    assert r["latency_p99_s"] < 1.0 * 1.25 + 0.5  # the call (±25 %) and no queue to speak of
    assert r["ingest_stored"] > 0.9 * r["offered"]["ingest"]


STEP = {
    "duration_s": 300,  # four minutes after the step: three of them checked
    "backend": {"slots": 384, "service_s": 1.6},  # 240 calls/s
    # twelve workers from the start (12 x 32 = 384 slots): the test is of admission, not
    # of scaling; three api tasks, since every api process admits up to the room it sees
    # (service/admission.py counts its own admissions only), so 30 pods overshoot more
    # (production's maximum is 10 since worker deploys keep 100 % and overlap by 25 %)
    # (a deploy may drop workers here: twelve with a deploy's overlap would exceed the
    # backend's 400 slots, a plan Terraform refuses)
    "terraform": {
        "worker_min_tasks": 12,
        "worker_max_tasks": 12,
        "api_max_tasks": 3,
        "worker_deployment_maximum_percent": 100,
        "worker_deployment_minimum_healthy_percent": 50,
    },
    "load": [
        {"at_s": 0, "queued_rps": 100},
        {"at_s": 60, "queued_rps": 100},
        {"at_s": 60, "queued_rps": 2400},
    ],
}


def test_a_step_to_ten_times_capacity_sheds_and_keeps_the_backend_busy() -> None:
    r = simulate(scenario_of(**STEP)).result
    assert_conserved(r)
    assert r["shed"]["queued"] > 0.8 * r["offered"]["queued"]
    capacity = 384 / 1.6 * 60
    for minute in r["minutes"][3:]:  # from two minutes after the step on
        assert 0.9 * capacity <= minute["answered"]["queued"] <= 1.01 * capacity, minute
    # what admission lets in is answered in its window: timeouts stay a small share
    assert r["timed_out"] < 0.05 * r["answered"]["queued"]
    # and it is the pods' admission that sheds, at once, not the workers after a queue wait:
    # admission keeps 1 s of the window free (service/admission.py), less than what it does
    # not see at ten times capacity (a poll's admissions by the other processes, the
    # messages the workers prefetched: ~1 s each), so ~3 % of the refusals come from the
    # workers at the end of a queue wait — a 503 there, never a 504 (with a fifth of the
    # window kept free, 0.04 %; in a brownout that fifth refused what the backend could serve)
    reasons = r["shed_reasons"]["queued"]
    assert reasons.get("worker_refused_late", 0) < 0.05 * reasons["predicted_wait"], reasons


def test_under_overload_normal_requests_are_shed_before_high_ones() -> None:
    r = simulate(
        scenario_of(
            **{
                **STEP,
                "mix": {"high_share": 0.1},
                "model": {"api_gateway": False},  # no route throttles: the pods and workers decide
            }
        )
    ).result
    assert_conserved(r)
    high, normal = r["queued_by_priority"]["high"], r["queued_by_priority"]["normal"]
    assert normal.get("shed", 0) > 0.8 * normal["offered"]
    assert high.get("shed", 0) + high.get("timed_out", 0) < 0.01 * high["offered"]
    assert high["answered"] > 0.98 * high["offered"]


@pytest.mark.parametrize("refuse_late", [False, True])
def test_workers_delete_expired_messages_without_calling_the_backend(refuse_late: bool) -> None:
    """Without predictive admission a minute of overload fills the queue far past the
    reply window. The workers delete what has expired without a backend call, so once the
    load is back under capacity the backend answers the new requests at once instead of
    working through minutes of calls nobody waits for. With the late refusal (on by
    default) the messages about to expire are refused before they do: the same recovery."""
    overload = {
        **STEP,
        "duration_s": 420,
        "model": {
            "settings": {"admission_predictive": False},
            "worker_refuses_late": refuse_late,
        },
        "load": [
            {"at_s": 0, "queued_rps": 100},
            {"at_s": 60, "queued_rps": 100},
            {"at_s": 60, "queued_rps": 2400},
            {"at_s": 120, "queued_rps": 2400},
            {"at_s": 120, "queued_rps": 100},
        ],
    }
    r = simulate(scenario_of(**overload)).result
    assert_conserved(r)
    assert r["max_backlog"]["normal"] > 20 * 240  # more than a window's worth of calls
    if refuse_late:
        assert r["shed_reasons"]["queued"]["worker_refused_late"] > 0
    else:
        assert r["backend"]["expired_deleted"] > 0
    for minute in r["minutes"][5:]:
        assert minute["answered"]["queued"] >= 0.9 * minute["offered"]["queued"], minute


BURST = {
    "duration_s": 900,
    "backend": {"slots": 400, "service_s": 1.6},
    "load": [
        {"at_s": 0, "queued_rps": 20},
        {"at_s": 60, "queued_rps": 20},
        {"at_s": 60, "queued_rps": 200},
    ],
}


def test_raising_the_worker_maximum_never_sheds_more() -> None:
    shed = []
    # tasks of 32 slots (the variable's default; production's 100 need no scale-out here):
    # twelve of them hold 384 of the backend's 400 slots
    small_tasks = {"settings.worker_concurrency": 32}
    for most in (4, 6, 12):
        burst = scenario_of(**{**BURST, "duration_s": 300})  # the scale-out's first minutes
        r = simulate(burst, {"worker_max_tasks": most, **small_tasks}).result
        assert_conserved(r)
        assert r["peak_tasks"]["worker"] <= most
        shed.append(r["shed"]["queued"] + r["timed_out"])
    assert shed[0] >= shed[1] >= shed[2]
    assert shed[0] > shed[2]  # and the maximum matters here


def test_the_tfvars_drive_the_result(tmp_path: Path) -> None:
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform", "tests"))
    tfvars = copy / "examples" / "production.tfvars"
    text = tfvars.read_text()
    assert text.count("worker_max_tasks            = 10") == 1
    tfvars.write_text(
        text.replace("worker_max_tasks            = 10", "worker_max_tasks            = 4")
    )
    # tasks of 32 slots, so that the maximum matters (see above); five minutes of the
    # burst are enough for the scale-out to pass four tasks
    sc = scenario_of(**{**BURST, "duration_s": 300}, terraform={"settings.worker_concurrency": 32})
    base = simulate(sc).result
    edited = simulate(sc, None, copy, tfvars).result
    via_set = simulate(sc, {"worker_max_tasks": 4}).result
    assert base["peak_tasks"]["worker"] > 4 and edited["peak_tasks"]["worker"] == 4
    assert edited["answered"]["queued"] < base["answered"]["queued"]
    without_overrides = {k: v for k, v in via_set.items() if k != "overrides"}
    assert without_overrides == {k: v for k, v in edited.items() if k != "overrides"}


def votes_beyond_one_api_task() -> dict[str, Any]:
    """Votes at 1.3 times what one api task's CPU accepts (the measured api CPU per vote),
    under the votes route's throttle; the account's quota raised for them."""
    per_task = 1.0 / ThroughputFigures.load(FIGURES_PATH).cpu_s("votes", "api")
    rate = 1.3 * per_task
    route = load_policy().route_throttles["POST /api/polls/{poll_id}/votes"]
    assert rate < route.rate
    return {
        "duration_s": 120,
        "backend": {"slots": 100, "service_s": 1.0},
        "model": {"autoscaling": False, "api_tasks": 1, "writer_tasks": 2},
        "aws": {"api_gateway_account_rate": 2 * rate},
        "load": [{"at_s": 0, "ingest_rps": rate}],
    }


def test_direct_votes_skip_the_pods() -> None:
    votes = votes_beyond_one_api_task()
    through_pods = simulate(scenario_of(**votes)).result
    direct = simulate(scenario_of(**votes), {"ingest_direct": True}).result
    for r in (through_pods, direct):
        assert_conserved(r)
    assert through_pods["shed"]["ingest"] > 0.1 * through_pods["offered"]["ingest"]
    assert not through_pods["edge"]["ingest_direct"]
    # API Gateway sends every vote to SQS itself: no pod's CPU, no listen backlog
    assert direct["edge"]["ingest_direct"]
    assert direct["shed"]["ingest"] == 0
    assert direct["edge"]["direct_votes"] == direct["offered"]["ingest"]
    assert direct["answered"]["ingest"] == direct["offered"]["ingest"]
    # nothing reaches the pods through the NLB; each vote is its own SendMessage
    assert direct["aws_requests"]["nlb"] == 0 < through_pods["aws_requests"]["nlb"]
    assert direct["aws_requests"]["sqs_calls"] > direct["offered"]["ingest"]
    assert direct["ingest_stored"] > 0.9 * direct["offered"]["ingest"]


def test_the_edge_is_priced_as_the_terraform_builds_it() -> None:
    r = simulate(scenario_of(**FLAT)).result
    req, usd, hours = r["aws_requests"], r["cost_usd"], FLAT["duration_s"] / 3600
    # a REST API: $3.50 a million (the first tier); two web ACLs: CloudFront's sees every
    # viewer request, the stage's every request that reaches API Gateway
    assert usd["api_gateway"] == round(req["api_gateway"] * 3.5e-6, 4)
    viewers = sum(r["offered"].values())
    assert req["waf_inspected"] == viewers + req["api_gateway"]  # nothing throttled here
    edge = load_policy().edge
    assert edge is not None and len(edge.web_acls) == 2
    fees = sum(5 + 1 * a.rules for a in edge.web_acls) * hours / 730  # $5 an ACL, $1 a rule
    assert usd["waf"] == round(req["waf_inspected"] * 0.6e-6 + fees, 4)
    # one NLB: its hours and the bytes it carries
    assert usd["nlb"] == round(hours * 0.0225 + req["nlb"] * 2048 / 1e9 * 0.006, 4)
    assert usd["total"] == pytest.approx(sum(v for k, v in usd.items() if k != "total"), 1e-3)
    # the stage's WAF comes before API Gateway's throttles: it inspects (and bills) what
    # they refuse too; API Gateway does not bill its 429s
    logins = simulate(
        scenario_of(
            duration_s=60,
            backend={"slots": 400, "service_s": 0.5},
            mix={"high_share": 1.0},  # all on POST /api/login: 200/s, a bucket of 400
            load=[{"at_s": 0, "queued_rps": 1000}],
        )
    ).result
    throttled = logins["shed_reasons"]["queued"]["api_gateway_throttle"]
    assert throttled > 0
    req = logins["aws_requests"]
    assert req["waf_inspected"] == logins["offered"]["queued"] + req["api_gateway"] + throttled
    assert req["api_gateway"] == logins["offered"]["queued"] - throttled


def test_api_gateway_cuts_a_request_at_its_integration_timeout(tmp_path: Path) -> None:
    # a backend call of 12 s fits the 20 s reply window, not a 10 s integration timeout
    slow = scenario_of(
        duration_s=180,
        backend={"slots": 400, "service_s": 12.0},
        model={"service_spread": 0.0},
        load=[{"at_s": 0, "queued_rps": 5}],
    )
    base = simulate(slow).result
    assert base["edge"]["integration_timeout_s"] == 29
    assert base["timed_out"] == 0 and base["answered"]["queued"] > 0
    copy = tmp_path / "terraform"
    shutil.copytree(TERRAFORM_DIR, copy, ignore=shutil.ignore_patterns(".terraform", "tests"))
    variables = copy / "modules" / "edge" / "variables.tf"
    text = variables.read_text()
    assert text.count("default     = 29000") == 1
    variables.write_text(text.replace("default     = 29000", "default     = 10000"))
    cut = simulate(slow, None, copy, copy / "examples" / "production.tfvars").result
    assert cut["edge"]["integration_timeout_s"] == 10
    assert cut["answered"]["queued"] == 0 and cut["timed_out"] > 0


def test_the_writer_starts_from_zero_when_votes_wait() -> None:
    # production keeps one writer warm; a stack that lets it go to zero
    r = simulate(
        scenario_of(
            duration_s=600,
            backend={"slots": 10, "service_s": 1.0},
            load=[{"at_s": 0, "ingest_rps": 100}],
            terraform={"writer_min_tasks": 0},
        )
    ).result
    assert_conserved(r)
    starts = [a for a in r["scaling_activities"] if a["service"] == "writer"]
    assert starts and starts[0]["from"] == 0 and starts[0]["policy"] == "writer_from_zero"
    assert r["ingest_stored"] > 0 and r["max_oldest_age_s"]["ingest"] > 60


# --- the command line ----------------------------------------------------------------------


def write_scenario(tmp_path: Path, raw: dict[str, Any]) -> Path:
    lines = ['name = "cli"', f"duration_s = {raw['duration_s']}", "[backend]"]
    lines += [f"{k} = {v}" for k, v in raw["backend"].items()]
    for point in raw["load"]:
        lines.append("[[load]]")
        lines += [f"{k} = {v}" for k, v in point.items()]
    path = tmp_path / "cli.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


CONTRACT = {
    "offered",
    "answered",
    "shed",
    "timed_out",
    "lost",
    "queued_at_end",
    "ingest_stored",
    "ingest_backlog_at_end",
    "latency_p50_s",
    "latency_p99_s",
    "max_backlog",
    "max_oldest_age_s",
    "peak_tasks",
    "task_hours",
    "first_scale_out_s",
    "cost_usd",
}


def test_cli_json_plot_and_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_scenario(tmp_path, {**BURST, "duration_s": 300})
    out = tmp_path / "run.png"
    assert main([str(path), "--json", "--plot", str(out), "--set", "worker_max_tasks=5"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= CONTRACT
    for key in ("offered", "answered", "shed"):
        assert set(r[key]) == set(CLASSES)
    assert set(r["cost_usd"]) == {
        "fargate",
        "sqs",
        "api_gateway",
        "cloudfront",
        "waf",
        "nlb",
        "total",
    }
    assert r["overrides"] == {"worker_max_tasks": 5} and r["peak_tasks"]["worker"] <= 5
    assert r["first_scale_out_s"] is None or r["first_scale_out_s"] > 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert main([str(path)]) == 0
    assert "queued" in capsys.readouterr().out


def test_cli_refuses_what_it_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_scenario(tmp_path, {**BURST, "duration_s": 60})
    assert main([str(path), "--set", "worker_maximum=5"]) == 2
    assert "no variable 'worker_maximum'" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "duration_s = 60\nstep_s = 2\n[backend]\nslots = 1\nservice_s = 1\n[[load]]\nat_s = 0\n"
    )
    assert main([str(bad)]) == 2
    assert "step_s" in capsys.readouterr().err


# --- scenarios -------------------------------------------------------------------------------


def test_load_is_piecewise_linear_with_steps() -> None:
    sc = scenario_of(
        duration_s=100,
        backend={"slots": 1, "service_s": 1},
        load=[
            {"at_s": 0, "queued_rps": 10},
            {"at_s": 10, "queued_rps": 20},
            {"at_s": 20, "queued_rps": 20},
            {"at_s": 20, "queued_rps": 100},
        ],
    )
    assert sc.rate("queued", 5) == 15 and sc.rate("queued", 20) == 100
    assert sc.cumulative("queued", 10) == 150 and sc.cumulative("queued", 30) == 150 + 200 + 1000
    assert sc.rate("cached", 5) == 0
    assert sc.first_step_up_s() == 0


def test_malformed_scenarios_are_refused() -> None:
    base = {"duration_s": 60, "backend": {"slots": 1, "service_s": 1}, "load": [{"at_s": 0}]}
    with pytest.raises(ScenarioError, match="backend"):
        scenario.parse({k: v for k, v in base.items() if k != "backend"})
    with pytest.raises(ScenarioError, match="unknown keys"):
        scenario.parse({**base, "load": [{"at_s": 0, "queue_rps": 3}]})
    with pytest.raises(ScenarioError, match="time order"):
        scenario.parse({**base, "load": [{"at_s": 5}, {"at_s": 0}]})
    with pytest.raises(ValueError, match="unknown constants"):
        simulate(scenario.parse({**base, "model": {"vcpu": 2}}))


def _table(tmp_path: Path, priorities: list[str]) -> Path:
    routes = "".join(
        f'[[routes]]\nname = "r{i}"\nmethod = "GET"\npath = "/r{i}/{{k}}"\n'
        f'priority = "{p}"\ntimeout_s = 20\ncache = {{ key = "k", ttl_s = 60 }}\n\n'
        for i, p in enumerate(priorities)
    )
    path = tmp_path / "routes.toml"
    path.write_text(routes)
    return path


def test_cached_misses_wait_where_the_route_table_puts_cached_routes(tmp_path: Path) -> None:
    """A miss is a proxied request on its route's queue: the production table's cached
    routes are high (a miss fills the cache for every request of its key), and a table
    whose cached routes are normal puts the misses behind the high requests."""
    assert scenario.cached_miss_priority() == "high"
    assert scenario.cached_miss_priority(_table(tmp_path, ["normal", "high"])) == "normal"
    assert scenario.cached_miss_priority(_table(tmp_path, ["high", "high", "normal"])) == "high"
    run = simulate(scenario_of(**BURST))
    assert run.sim.cached_miss_priority == "high"
