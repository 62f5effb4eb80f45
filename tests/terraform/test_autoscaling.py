"""The scaling policies point at the right queues and services: the worker scales on the
backlog of high + normal, the writer on ingest (and to and from zero), the api on CPU and
requests; the worker's maximum is bounded by what the legacy backend can take."""

from __future__ import annotations

from typing import Any

from tests.terraform.tfmodel import MODULES_DIR, TF_ROOT, blocks, literal, load_module, unquote

AUTOSCALING = MODULES_DIR / "autoscaling"


def call() -> dict[str, Any]:
    return load_module(TF_ROOT).module_calls["autoscaling"]


def policy(name: str) -> dict[str, Any]:
    return load_module(AUTOSCALING).resource("aws_appautoscaling_policy", name)


def test_root_wires_each_service_to_its_queues() -> None:
    args = call()
    for process in ("api", "worker", "writer"):
        assert args[f"{process}_service_name"] == f'${{module.compute.service_names["{process}"]}}'
    assert args["cluster_name"] == "${module.compute.cluster_name}"
    assert args["worker_queue_names"] == [
        '${module.queues.queue_names["high"]}',
        '${module.queues.queue_names["normal"]}',
    ]
    assert args["writer_queue_name"] == '${module.queues.queue_names["ingest"]}'
    assert args["worker_concurrency"] == "${var.settings.worker_concurrency}"


def test_scalable_targets_are_the_services() -> None:
    mod = load_module(AUTOSCALING)
    for process in ("api", "worker", "writer"):
        target = mod.resource("aws_appautoscaling_target", process)
        assert target["resource_id"] == f"${{local.{process}_resource_id}}"
        assert f"var.{process}_service_name" in mod.locals[f"{process}_resource_id"]
        assert target["min_capacity"] == f"${{var.{process}_min_tasks}}"
        assert target["max_capacity"] == f"${{var.{process}_max_tasks}}"


def _backlog_policy(process: str) -> tuple[dict[str, Any], dict[str, Any]]:
    pol = policy(f"{process}_backlog")
    assert pol["resource_id"] == f"${{aws_appautoscaling_target.{process}.resource_id}}"
    assert literal(pol, "policy_type") == "TargetTrackingScaling"
    (config,) = pol["target_tracking_scaling_policy_configuration"]
    assert config["target_value"] == f"${{local.{process}_backlog_target}}"
    (custom,) = config["customized_metric_specification"]
    return config, custom


def _metrics(custom: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    static = blocks(custom, "metrics")
    (dynamic,) = blocks(custom, "dynamic")
    (queue_metrics,) = (v for k, v in dynamic.items() if unquote(k) == "metrics")
    return static, [queue_metrics]


def test_worker_scales_on_high_and_normal_backlog_per_task() -> None:
    _, custom = _backlog_policy("worker")
    static, (queue_metrics,) = _metrics(custom)
    assert queue_metrics["for_each"] == "${local.worker_queue_queries}"
    mod = load_module(AUTOSCALING)
    assert "var.worker_queue_names" in mod.locals["worker_queue_queries"]
    backlog = [unquote(m) for m in mod.locals["backlog_metrics"]]
    assert backlog == [
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessagesNotVisible",
    ]
    _assert_per_task(static, "worker")


def test_writer_scales_on_ingest_backlog_per_task() -> None:
    _, custom = _backlog_policy("writer")
    static, (queue_metrics,) = _metrics(custom)
    assert queue_metrics["for_each"] == "${local.writer_queue_queries}"
    mod = load_module(AUTOSCALING)
    assert "var.writer_queue_name" in mod.locals["writer_queue_queries"]
    assert "worker" not in mod.locals["writer_queue_queries"]
    _assert_per_task(static, "writer")


def _assert_per_task(static: list[dict[str, Any]], process: str) -> None:
    by_id = {literal(m, "id"): m for m in static}
    (stat,) = by_id["tasks"]["metric_stat"]
    (metric,) = stat["metric"]
    assert literal(metric, "metric_name") == "RunningTaskCount"
    dims = {literal(d, "name"): d["value"] for d in metric["dimensions"]}
    assert dims["ServiceName"] == f"${{var.{process}_service_name}}"
    assert dims["ClusterName"] == "${var.cluster_name}"
    result = by_id["backlog_per_task"]
    assert result["return_data"] is True
    assert literal(result, "expression").endswith("/ tasks")
    assert f"local.{process}_queue_queries" in literal(result, "expression")


def test_targets_derive_from_latency_over_processing_time() -> None:
    loc = load_module(AUTOSCALING).locals
    for process in ("worker", "writer"):
        target = loc[f"{process}_backlog_target"]
        assert f"var.{process}_acceptable_latency_s / var.{process}_processing_time_s" in target


def test_writer_scales_to_and_from_zero() -> None:
    mod = load_module(AUTOSCALING)
    assert "default" in mod.variables["writer_min_tasks"]
    assert int(mod.variables["writer_min_tasks"]["default"]) == 0
    for name in ("writer_from_zero", "writer_to_zero"):
        pol = policy(name)
        assert pol["resource_id"] == "${aws_appautoscaling_target.writer.resource_id}"
        assert literal(pol, "policy_type") == "StepScaling"
        alarm = mod.resource("aws_cloudwatch_metric_alarm", name)
        assert alarm["alarm_actions"] == [f"${{aws_appautoscaling_policy.{name}.arn}}"]
        queries = {literal(q, "id"): q for q in alarm["metric_query"]}
        (visible,) = queries["visible"]["metric"]
        assert visible["dimensions"] == {"QueueName": "${var.writer_queue_name}"}
    from_zero = mod.resource("aws_cloudwatch_metric_alarm", "writer_from_zero")
    queries = {literal(q, "id"): q for q in from_zero["metric_query"]}
    (tasks,) = queries["tasks"]["metric"]
    assert tasks["dimensions"]["ServiceName"] == "${var.writer_service_name}"
    assert "FILL(tasks, 0) == 0" in literal(queries["start_writer"], "expression")


def test_api_scales_on_cpu_and_requests() -> None:
    for name, metric in (
        ("api_cpu", "ECSServiceAverageCPUUtilization"),
        ("api_requests", "ALBRequestCountPerTarget"),
    ):
        pol = policy(name)
        assert pol["resource_id"] == "${aws_appautoscaling_target.api.resource_id}"
        (config,) = pol["target_tracking_scaling_policy_configuration"]
        (predefined,) = config["predefined_metric_specification"]
        assert literal(predefined, "predefined_metric_type") == metric


def test_worker_maximum_bounds_the_backend() -> None:
    target = load_module(AUTOSCALING).resource("aws_appautoscaling_target", "worker")
    (lifecycle,) = target["lifecycle"]
    conditions = [p["condition"] for p in lifecycle["precondition"]]
    assert any(
        "var.worker_max_tasks * var.worker_concurrency <= var.backend_max_concurrency" in c
        for c in conditions
    )
    assert call()["backend_max_concurrency"] == "${var.backend_max_concurrency}"
