"""The scaling simulator reads the policy from deploy/terraform as Terraform would: tfvars
over root defaults, wired into the modules, module defaults for the rest — and fails
clearly when the Terraform changes under it."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import hcl2
import pytest

from bench.scaling.compare import DEFAULT_BEFORE, terraform_at
from bench.scaling.hcl import Evaluator, Symbol, TerraformError, Unsupported, literal, translate
from bench.scaling.terraform import TERRAFORM_DIR, TFVARS, load_policy, root_scope


def tfvars() -> dict[str, object]:
    with TFVARS.open() as f:
        return {k: literal(v) for k, v in hcl2.load(f).items() if not k.startswith("__")}


def root_default(name: str) -> object:
    with (TERRAFORM_DIR / "variables.tf").open() as f:
        for block in hcl2.load(f)["variable"]:
            for key, body in block.items():
                if key.strip('"') == name:
                    return literal(body["default"])
    raise KeyError(name)


def module_default(name: str) -> object:
    with (TERRAFORM_DIR / "modules" / "autoscaling" / "variables.tf").open() as f:
        for block in hcl2.load(f)["variable"]:
            for key, body in block.items():
                if key.strip('"') == name:
                    return literal(body["default"])
    raise KeyError(name)


@pytest.fixture
def tf_copy(tmp_path: Path) -> Path:
    """A scratch copy of deploy/terraform (its modules and examples), to change."""
    dest = tmp_path / "terraform"
    shutil.copytree(
        TERRAFORM_DIR, dest, ignore=shutil.ignore_patterns(".terraform", "tests", "*.lock.hcl")
    )
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not exactly once in {path}"
    path.write_text(text.replace(old, new))


# --- what is read ------------------------------------------------------------------------


def test_the_policy_is_the_tfvars_through_the_module_wiring() -> None:
    values = tfvars()
    policy = load_policy()
    worker = policy.services["worker"]
    assert (worker.min_tasks, worker.max_tasks) == (
        values["worker_min_tasks"],
        values["worker_max_tasks"],
    )
    assert worker.settings["worker_concurrency"] == values["settings"]["worker_concurrency"]
    tt = {t.name: t for t in policy.target_tracking}
    # the module's local: floor(acceptable latency / processing time), from the tfvars
    assert tt["worker_backlog"].target == math.floor(
        values["worker_acceptable_latency_s"] / values["worker_processing_time_s"]
    )
    # not wired by the root: the module's own defaults
    assert tt["worker_backlog"].scale_out_cooldown_s == module_default("scale_out_cooldown_s")
    assert tt["api_cpu"].scale_in_cooldown_s == module_default("scale_in_cooldown_s")
    # the worker's backlog: both queues' visible + in-flight messages per running task
    queries = {q.id: q for q in tt["worker_backlog"].queries}
    queues = {
        q.stat.dim("QueueName")
        for q in queries.values()
        if q.stat and q.stat.namespace == "AWS/SQS"
    }
    assert queues == {"high", "normal"}
    expression = next(q.expression for q in queries.values() if q.return_data)
    assert expression is not None and expression.endswith("/ tasks")
    steps = {s.name: s for s in policy.step_policies}
    # the fast alarms read the pods' signal: the names of deploy/terraform/scaling_signal.json
    # with the stack's name as the dimension, at the signal's period
    signal = json.loads((TERRAFORM_DIR / "scaling_signal.json").read_text())
    fast = steps["worker_fast"].alarm
    assert fast.threshold == root_default("worker_target_utilization_percent")
    assert fast.period_s == root_default("signal_period_s")
    assert {q.stat.name for q in fast.queries if q.stat} == {
        signal["metrics"][k] for k in ("drain_rate", "backlog", "drain_capacity")
    }
    assert {q.stat.dimensions for q in fast.queries if q.stat} == {
        ((signal["dimension"], values["name"]),)
    }
    assert f"backlog / {values['worker_acceptable_latency_s']}" in (
        next(q.expression for q in fast.queries if q.return_data) or ""
    )
    assert steps["api_fast"].alarm.queries[0].stat is not None
    assert steps["api_fast"].alarm.queries[0].stat.name == signal["metrics"]["cpu"]
    assert steps["writer_from_zero"].alarm.queries[-1].expression == (
        "IF(visible > 0 AND in_flight == 0 AND FILL(desired, 0) == 0, 1, 0)"
    )
    # target tracking on the same demand, over one-minute datapoints
    assert tt["worker_demand"].target == root_default("worker_target_utilization_percent")
    assert tt["worker_demand"].period_s == 60
    assert {q.stat.dimensions for q in tt["worker_demand"].queries if q.stat} == {
        ((signal["dimension"], values["name"]),)
    }  # the same series the fast alarm reads (dynamic "dimensions" blocks)
    # no request-count policy unless api_requests_per_target is given
    assert "api_requests" not in tt
    with_requests = load_policy({"api_requests_per_target": 6000})
    assert "api_requests" in {t.name for t in with_requests.target_tracking}
    assert policy.reply_window_s == values["reply_window_s"]
    assert policy.deregistration_delay_s == math.ceil(values["reply_window_s"]) + 15
    assert (
        policy.route_throttles["POST /api/polls/{poll_id}/votes"].rate
        == (values["route_throttles"]["POST /api/polls/{poll_id}/votes"]["rate"])
    )


def test_set_overrides_one_value_and_reaches_every_use() -> None:
    policy = load_policy({"worker_max_tasks": 6, "settings.worker_concurrency": 16})
    assert policy.services["worker"].max_tasks == 6
    assert policy.services["worker"].settings["worker_concurrency"] == 16
    # other settings of the object keep their tfvars or optional() defaults
    assert (
        policy.services["api"].settings["rate_limit_rps"] == tfvars()["settings"]["rate_limit_rps"]
    )
    assert policy.services["api"].settings["admission_threshold"] == 100


def test_a_changed_tfvars_file_changes_the_policy(tf_copy: Path) -> None:
    values = tfvars()
    edit(
        tf_copy / "examples" / "production.tfvars",
        f"worker_acceptable_latency_s = {values['worker_acceptable_latency_s']}",
        "worker_acceptable_latency_s = 2",
    )
    policy = load_policy(None, tf_copy, tf_copy / "examples" / "production.tfvars")
    tt = {t.name: t for t in policy.target_tracking}
    assert tt["worker_backlog"].target == math.floor(2 / values["worker_processing_time_s"])


def test_a_renamed_variable_fails_naming_it(tf_copy: Path) -> None:
    edit(tf_copy / "main.tf", "= var.worker_max_tasks", "= var.worker_task_limit")
    with pytest.raises(
        TerraformError, match=r"var\.worker_task_limit is not declared.*variables\.tf"
    ):
        load_policy(None, tf_copy, tf_copy / "examples" / "production.tfvars")


def test_an_input_without_value_fails_naming_it(tf_copy: Path) -> None:
    path = tf_copy / "modules" / "autoscaling" / "variables.tf"
    text = path.read_text()
    start = text.index('variable "scale_out_cooldown_s"')
    default = text.index("default", start)
    path.write_text(text[:default] + "# " + text[default:])
    with pytest.raises(TerraformError, match="scale_out_cooldown_s has no value"):
        load_policy(None, tf_copy, tf_copy / "examples" / "production.tfvars")


def test_a_policy_the_simulator_cannot_run_fails(tf_copy: Path) -> None:
    edit(
        tf_copy / "modules" / "autoscaling" / "main.tf",
        'predefined_metric_type = "ECSServiceAverageCPUUtilization"',
        'predefined_metric_type = "ECSServiceAverageMemoryUtilization"',
    )
    with pytest.raises(TerraformError, match="ECSServiceAverageMemoryUtilization is not simulated"):
        load_policy(None, tf_copy, tf_copy / "examples" / "production.tfvars")


def test_a_scaling_resource_the_simulator_does_not_know_fails(tf_copy: Path) -> None:
    main = tf_copy / "modules" / "autoscaling" / "main.tf"
    main.write_text(
        main.read_text()
        + """
resource "aws_cloudwatch_composite_alarm" "show" {
  alarm_name    = "show"
  alarm_rule    = "ALARM(a) OR ALARM(b)"
  alarm_actions = [aws_appautoscaling_policy.worker_fast.arn]
}
"""
    )
    with pytest.raises(TerraformError, match=r"aws_cloudwatch_composite_alarm\.show is not"):
        load_policy(None, tf_copy, tf_copy / "examples" / "production.tfvars")


def test_set_of_an_unknown_variable_fails() -> None:
    with pytest.raises(TerraformError, match="no variable 'worker_maximum'"):
        load_policy({"worker_maximum": 3})


def test_a_plan_terraform_refuses_is_not_simulated() -> None:
    # a deploy at the minimum (4 tasks) that may not start a fifth before it stops one
    # (120 %: floor(4.8) = 4) would never start: the autoscaling module's precondition
    with pytest.raises(TerraformError, match=r"the plan fails: .*deploy"):
        load_policy({"worker_deployment_maximum_percent": 120})
    # the same with capacity allowed to drop: Terraform plans it
    load_policy(
        {
            "worker_deployment_maximum_percent": 120,
            "worker_deployment_minimum_healthy_percent": 50,
        }
    )


def test_the_workers_calls_stay_within_the_backend_at_any_scale() -> None:
    """Twelve workers of 100 slots with a deploy's overlap (15 tasks) hold 1,500 slots; the
    shared limit (QF_BACKEND_MAX_CONCURRENCY = backend_max_concurrency) keeps their calls at
    the backend's 400, so Terraform plans it (it refused such a fleet before the limit)."""
    policy = load_policy({"worker_max_tasks": 12, "settings.worker_concurrency": 100})
    assert policy.worker_peak_backend_calls == policy.backend_max_concurrency == 400
    worker = policy.services["worker"]
    assert worker.settings["backend_max_concurrency"] == 400


def test_the_worker_deploy_overlap_is_derived_from_the_minimum() -> None:
    values = tfvars()
    policy = load_policy()
    worker = policy.services["worker"]
    low = values["worker_min_tasks"]
    # the smallest maximum percent that starts one task at the minimum count (main.tf)
    assert worker.deployment_maximum_percent == math.ceil(100 * (low + 1) / low)
    assert worker.deployment_minimum_healthy_percent == 100
    assert policy.worker_peak_backend_calls == min(
        math.floor(values["worker_max_tasks"] * worker.deployment_maximum_percent / 100)
        * values["settings"]["worker_concurrency"],
        values["backend_max_concurrency"],
    )
    fewer = load_policy({"worker_min_tasks": 3, "worker_max_tasks": 9})
    assert fewer.services["worker"].deployment_maximum_percent == 134


# --- what is in front of the api (modules/edge) -------------------------------------------


def test_the_rest_apis_throttles_are_its_method_settings() -> None:
    values = tfvars()
    edge = load_policy().edge
    assert edge is not None and edge.api_kind == "rest"
    assert edge.default_throttle.rate == values["default_throttle"]["rate"]
    assert edge.default_throttle.burst == values["default_throttle"]["burst"]
    assert {k: (t.rate, t.burst) for k, t in edge.route_throttles.items()} == {
        k: (v["rate"], v["burst"]) for k, v in values["route_throttles"].items()
    }
    # the integration timeout of the OpenAPI document's integrations (the module default)
    with (TERRAFORM_DIR / "modules" / "edge" / "variables.tf").open() as f:
        for block in hcl2.load(f)["variable"]:
            if "integration_timeout_ms" in {k.strip('"') for k in block}:
                (body,) = block.values()
                assert edge.integration_timeout_s == literal(body["default"]) / 1000
    # CloudFront's web ACL sees every viewer, the stage's every request at API Gateway;
    # the VPC link reaches the ALB through one NLB; no route sends to SQS unless asked
    assert {(a.scope, a.attached_to) for a in edge.web_acls} == {
        ("CLOUDFRONT", "cloudfront"),
        ("REGIONAL", "api_gateway"),
    }
    assert edge.network_load_balancers == 1
    assert edge.direct_routes == {}
    direct = load_policy({"ingest_direct": True}).edge
    assert direct is not None
    assert direct.direct_routes == {"POST /api/polls/{poll_id}/votes": "ingest"}


def test_a_changed_method_setting_changes_the_throttle(tf_copy: Path) -> None:
    # read from the resources API Gateway applies, not from the variables that feed them
    edit(
        tf_copy / "modules" / "edge" / "api.tf",
        "throttling_rate_limit  = each.value.throttle.rate",
        "throttling_rate_limit  = each.value.throttle.rate / 2",
    )
    edge = load_policy(None, tf_copy, tf_copy / "examples" / "production.tfvars").edge
    assert edge is not None
    for key, v in tfvars()["route_throttles"].items():  # type: ignore[union-attr]
        assert edge.route_throttles[key].rate == v["rate"] / 2


def test_an_edge_the_simulator_cannot_follow_fails(tf_copy: Path) -> None:
    tfvars_path = tf_copy / "examples" / "production.tfvars"
    api = tf_copy / "modules" / "edge" / "api.tf"
    text = api.read_text()
    path = 'method_path = "${trimprefix(each.value.path, "/")}'
    edit(api, path, path.replace('"${', '"v2/${'))  # a throttle on a path the API lacks
    with pytest.raises(TerraformError, match="throttles no method of the REST API"):
        load_policy(None, tf_copy, tfvars_path)
    api.write_text(text)
    edit(api, 'type                = "http_proxy"', 'type                = "http"')
    with pytest.raises(TerraformError, match="integration http is not simulated"):
        load_policy(None, tf_copy, tfvars_path)


def test_the_http_api_of_the_earlier_edge_is_read(tmp_path: Path) -> None:
    # the policy before the REST API (bench.scaling.compare's default "before")
    before = terraform_at(DEFAULT_BEFORE, tmp_path)
    edge = load_policy(None, before, before / "examples" / "production.tfvars").edge
    assert edge is not None and edge.api_kind == "http"
    assert edge.default_throttle.rate == 1000 and edge.network_load_balancers == 0
    assert set(edge.route_throttles) == {"POST /api/login", "POST /api/polls/{poll_id}/votes"}
    assert [a.attached_to for a in edge.web_acls] == ["cloudfront"]


def test_root_locals_follow_the_queue_defaults() -> None:
    queues = root_scope().local("queues")
    assert queues["ingest"]["message_retention_s"] > queues["high"]["message_retention_s"]
    assert queues["high"]["oldest_age_alarm_s"] == math.floor(0.75 * tfvars()["reply_window_s"])


# --- the expression evaluator ----------------------------------------------------------


def evaluate(expr: str, **names: object) -> object:
    return Evaluator(lambda n: names.get(n, Symbol(n))).expression(expr)


def test_arithmetic_functions_and_conditionals() -> None:
    var = {"a": 5, "b": 0.05, "flag": True, "m": {"x": {"cpu": 2048}}}
    assert evaluate("max(1, floor(var.a / var.b))", var=var) == 100
    assert evaluate('var.flag && var.a > 3 ? "yes" : "no"', var=var) == "yes"
    assert evaluate("!var.flag || var.a != 5", var=var) is False
    assert evaluate('tostring(max(1, floor(var.m["x"].cpu / 1024)))', var=var) == "2"
    assert evaluate("coalesce(null, 60)") == 60
    assert evaluate("ceil(var.a / 2) + 15", var=var) == 18


def test_for_expressions_templates_and_objects() -> None:
    local = {"names": ["high", "normal"], "metrics": ["V", "N"]}
    queries = evaluate(
        "flatten([for i, q in local.names : [for j, m in local.metrics : "
        '{id = "q${i}${j == 0 ? "v" : "n"}", queue = q, metric = m}]])',
        local=local,
    )
    assert [q["id"] for q in queries] == ["q0v", "q0n", "q1v", "q1n"]  # type: ignore[index]
    assert (
        evaluate('"(${join(" + ", [for q in local.qs : q.id])}) / tasks"', local={"qs": queries})
        == "(q0v + q0n + q1v + q1n) / tasks"
    )
    assert evaluate(
        "{for k, v in local.m : k => v * 2 if v > 1}", local={"m": {"a": 1, "b": 2}}
    ) == {"b": 4}
    assert evaluate("merge(local.a, {x = 1, y = local.a.z})", local={"a": {"z": 3}}) == {
        "z": 3,
        "x": 1,
        "y": 3,
    }


def test_apply_time_values_stay_symbols_and_fail_where_a_number_is_needed() -> None:
    ref = evaluate('module.queues.queue_names["ingest"]')
    assert ref == Symbol('module.queues.queue_names["ingest"]')
    with pytest.raises(TerraformError, match="only known at apply time"):
        evaluate("module.compute.count + 1")


def test_what_is_not_evaluated_is_refused() -> None:
    with pytest.raises(Unsupported):
        translate("var.list[*].id")
    with pytest.raises(Unsupported):
        evaluate('regex("a", var.x)', var={"x": "a"})
