"""What AWS does that the Terraform does not say: metric periods and publication delays,
target tracking's alarms, task start times, API Gateway's and CloudFront's behaviour, and
prices. Each constant carries its source; where AWS publishes no figure the comment says
so and gives the range assumed. Ranges are (low, high) and drawn uniformly per datapoint
or per task from the scenario's seed, so a run is reproducible and the spread shows.

A scenario may override any of these for one run (``[aws]`` table, same names in lower
case), which is how the calibration against this machine and "what if AWS is slower"
runs are made without editing code.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

Range = tuple[float, float]


@dataclass(frozen=True)
class AwsConstants:
    # --- CloudWatch metrics -------------------------------------------------------------
    sqs_period_s: float = 60.0
    """SQS pushes its queue metrics to CloudWatch at one-minute intervals ("Amazon SQS and
    CloudWatch are integrated … metrics … are automatically collected and pushed to
    CloudWatch at one-minute intervals", SQS Developer Guide, Monitoring with CloudWatch)."""

    sqs_publication_delay_s: Range = (60.0, 150.0)
    """How late a one-minute SQS datapoint becomes visible to alarms. AWS publishes no
    figure; practitioners report 1-3 minutes typical (and "up to 15 minutes" in the worst
    case). Assumed 60-150 s after the minute ends."""

    container_insights_period_s: float = 60.0
    """ECS/ContainerInsights RunningTaskCount and DesiredTaskCount: one-minute metrics
    derived from the task telemetry (CloudWatch User Guide, Container Insights metrics)."""

    container_insights_publication_delay_s: Range = (60.0, 180.0)
    """AWS publishes no figure ("Metrics are not visible until the container tasks have
    been running for some time", Container Insights metrics). Assumed 60-180 s: it is
    computed from performance log events, one step more than SQS's. Its spread against
    SQS's is what can fill a missing DesiredTaskCount with 0 in the writer's from-zero
    alarm."""

    ecs_publication_delay_s: Range = (30.0, 90.0)
    """AWS/ECS CPUUtilization, one-minute resolution by default (ECS Developer Guide,
    "Faster auto scaling with high-resolution metrics": 60 s, or 20 s when configured).
    Delay not published; assumed 30-90 s."""

    alb_publication_delay_s: Range = (30.0, 90.0)
    """AWS/ApplicationELB RequestCountPerTarget, one-minute sums. Delay not published;
    assumed 30-90 s."""

    emf_publication_delay_s: Range = (20.0, 90.0)
    """The queuefront namespace (the Prometheus metrics) arrives as embedded metric format
    logs from the ADOT collector: scraped every 30 s, exported in batches of up to 60 s
    (modules/compute: scrape_interval, batch timeout), then extracted by CloudWatch Logs
    (not published; seconds). Assumed 20-90 s."""

    emf_log_publication_delay_s: Range = (5.0, 15.0)
    """The api pods' scaling signal (service/scaling_signal.py): EMF lines on stdout, sent
    by the awslogs log driver in batches every 5 s (moby daemon/logger/awslogs,
    batchPublishFrequency), then extracted into metrics by CloudWatch Logs, which
    publishes no figure for that step (seconds). Assumed 5-15 s after the period ends."""

    # --- target tracking's alarms --------------------------------------------------------
    target_tracking_high_datapoints: int = 3
    """Application Auto Scaling creates the scale-out alarm as 3 of 3 one-minute
    datapoints. Not in the user guide; the alarms it creates show it (reported in
    aws/copilot-cli#4233, hashicorp/terraform-provider-aws#42553) and it cannot be
    configured."""

    target_tracking_low_datapoints: int = 15
    """The scale-in alarm: 15 of 15 one-minute datapoints (same sources as above)."""

    target_tracking_low_ratio: float = 0.9
    """The scale-in alarm fires below 90% of the target: "only when utilization reaches a
    threshold that is far enough below the target value (usually more than 10% lower)"
    (Application Auto Scaling User Guide, How target tracking works)."""

    alarm_action_repeat: bool = True
    """Auto Scaling actions repeat every period while an alarm stays in ALARM ("Except for
    Auto Scaling actions, the actions happen only on state transitions", CloudWatch User
    Guide, Alarm actions)."""

    # --- ECS / Fargate --------------------------------------------------------------------
    task_start_s: Range = (30.0, 60.0)
    """From a raised desired count to the container running its process: ECS scheduling,
    Fargate capacity, ENI attachment (awsvpc: "several seconds", ECS Developer Guide,
    Optimize task launch time), image pull and start. AWS publishes no figure; the pull
    is the part that grows with the image ("the whole container image needs to be pulled
    … for each Fargate task. The time it takes to pull the images is directly correlated
    to the time taken to start a Fargate task", ECS Developer Guide, "Linux containers on
    Fargate container image pull behavior"). Published measurements: ECS on Fargate
    running its first new tasks about 30 s after a scale-out (Vlad Ionescu, "Scaling
    containers on AWS in 2022"); 53-62 s from creation to start for a 413 MB image pulled
    through a NAT (elasticscale, "Reduce AWS Fargate pull times with SOCI", 2024). Lazy
    loading does not shorten it for an image our size: SOCI's gains are for images over
    250 MB and its overhead "may slow smaller images" (AWS Containers blog, "Under the
    hood: Lazy Loading Container Images with Seekable OCI and AWS Fargate"). Assumed
    30-60 s for the queuefront image (python:3.11-slim and the venv, ~150 MB, pulled
    through the ECR VPC endpoints): measure it (the tasks' createdAt -> startedAt) and
    set ``[aws] task_start_s``. (Was 45-90 s: longer than both measurements.) Fargate's
    launch rate (a bucket of 100 tasks, 20 a second per account, ECS Developer Guide,
    "AWS Fargate throttling quotas") is far above the few tasks a step adds: not
    simulated."""

    process_ready_s: float = 3.0
    """Python start, settings, connections, the frozen heap (measured locally: an api or
    worker answers /readyz within 2-3 s of its start)."""

    # --- API Gateway / CloudFront -----------------------------------------------------------
    api_gateway_account_rate: float = 10_000.0
    """Requests/s per account and Region across HTTP and REST APIs (API Gateway quotas:
    10,000 RPS; 2,500 in some newer Regions), a token bucket."""

    api_gateway_account_burst: float = 5_000.0
    """The account bucket's capacity: 5,000 requests (API Gateway quotas)."""

    api_gateway_timeout_s: float = 29.0
    """How long a client waits when no API Gateway is simulated (``[model] api_gateway =
    false``). With API Gateway the integration timeout is read from the Terraform
    (``timeoutInMillis`` of the REST API's integrations, ``timeout_milliseconds`` of an HTTP
    API's): REST APIs take 50 ms to 29 s by default, HTTP APIs up to 30 s (API Gateway
    quotas); past it API Gateway answers 504 itself."""

    cloudfront_error_ttl_s: float = 10.0
    """CloudFront caches an origin's 5xx for the error caching minimum TTL, 10 s by
    default (CloudFront Developer Guide, Error caching): viewers of an edge-cached object
    whose refresh failed get the error for that long."""

    # --- SQS ------------------------------------------------------------------------------
    sqs_delivery_s: float = 0.02
    """Send to receivable, with a waiting long poll: tens of milliseconds in-Region (not
    published; measured ~10-20 ms on the emulator). Below one simulation step."""

    sqs_send_s: float = 0.015
    """One SendMessage(Batch) round trip in-Region (not published; assumed 10-20 ms): how
    long an ingest pack stays open under load (service/packer.py: group commit)."""

    # --- prices (USD; Linux/x86, us-east-1 — eu-west-1 lists the same or up to ~10% more) --
    fargate_vcpu_hour: float = 0.04048
    """AWS Fargate pricing, per vCPU-hour, on demand (also bench/throughput.py)."""

    fargate_gb_hour: float = 0.004445
    """AWS Fargate pricing, per GB of memory-hour, on demand."""

    fargate_spot_discount: float = 0.70
    """Fargate Spot runs "up to 70%" below on demand (AWS Fargate pricing); the actual
    price varies. Assumed the full 70%."""

    sqs_per_million: float = 0.40
    """Amazon SQS pricing, standard queues, per million requests (each 64 KB of a
    payload counts as one), after the first million a month."""

    api_gateway_rest_tiers: tuple[Range, ...] = (
        (333e6, 3.50),
        (667e6, 2.80),
        (19e9, 2.38),
        (float("inf"), 1.51),
    )
    """API Gateway REST APIs, USD per million requests by monthly tier (requests in the
    tier, price): first 333 million $3.50, next 667 million $2.80, next 19 billion $2.38,
    over 20 billion $1.51 (us-east-1; AWS whitepaper "Best Practices for Designing Amazon
    API Gateway Private APIs and Private Integration", Cost optimization, Table 4, which
    points to aws.amazon.com/api-gateway/pricing; the page's own tables render from
    pricing tokens and could not be read here). Throttled requests (429) and requests the
    stage's WAF blocks are assumed not billed (an AWS expert's answer on re:Post, "Pricing
    clarification for API Gateway": not in the pricing page's text)."""

    api_gateway_http_tiers: tuple[Range, ...] = ((300e6, 1.00), (float("inf"), 0.90))
    """API Gateway HTTP APIs (the edge before the REST API): first 300 million $1.00 per
    million, then $0.90 (same whitepaper and table; metered per 512 KB)."""

    waf_per_million: float = 0.60
    """AWS WAF, per million requests a web ACL inspects (allowed and blocked alike), for a
    web ACL of at most 1,500 WCUs (AWS WAF developer guide, "Web ACL capacity units":
    more WCUs cost more). $5 a month per web ACL and $1 per rule or rule group, prorated
    hourly, the same in every Region (AWS Networking & Content Delivery blog, "Cost-effective
    ways for securing your web applications using AWS WAF"; the figures as in AWS's own
    sample aws-samples/waf-and-shield-advanced-price-comparison, main.py, which cites
    aws.amazon.com/waf/pricing — the pricing page itself was not reachable here: unverified
    against it)."""

    waf_acl_month: float = 5.00
    waf_rule_month: float = 1.00

    nlb_hour: float = 0.0225
    """A Network Load Balancer, per hour (us-east-1; eu-west-1 lists about 10 % more).
    Not verified against aws.amazon.com/elasticloadbalancing/pricing (its tables render
    from pricing tokens); the figure is the us-east-1 list price as transcribed from that
    page by a third party (api-evangelist/amazon-elastic-load-balancing, plans)."""

    nlcu_hour: float = 0.006
    """Per NLCU-hour (same source, same caveat). An NLCU for TCP is 800 new connections a
    second, 100,000 active connections or 1 GB processed in the hour, whichever is
    highest; the simulator counts processed bytes only (API Gateway's VPC link keeps its
    connections open: assumed, not published)."""

    nlb_bytes_per_request: float = 2048.0
    """Bytes one request and its answer put through the NLB (headers and small JSON
    bodies). Not measured: assumed 2 KB; the NLB's cost scales with it."""

    cloudfront_https_per_10k: float = 0.0100
    """Amazon CloudFront pricing, HTTPS requests per 10,000, United States (Europe is
    listed higher); data transfer is not counted (bytes are not simulated)."""

    def with_overrides(self, values: dict[str, Any]) -> AwsConstants:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"[aws] has unknown constants: {', '.join(sorted(unknown))}")

        def convert(v: Any) -> Any:
            return tuple(convert(x) for x in v) if isinstance(v, list) else float(v)

        converted: dict[str, Any] = {
            k: convert(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return replace(self, **converted)


def tiered(count: float, tiers: tuple[Range, ...]) -> float:
    """USD for ``count`` requests in a month priced by ``tiers`` ((size, USD per million),
    in order)."""
    usd, left = 0.0, count
    for size, per_million in tiers:
        part = min(left, size)
        usd += part * per_million / 1e6
        left -= part
        if left <= 0:
            break
    return usd


DEFAULT = AwsConstants()
