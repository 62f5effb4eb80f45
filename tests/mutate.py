"""Proof that the regression tests of the hardening (issue 9) can fail.

``python -m tests.mutate [NAME ...]`` applies each mutation — the smallest literal edit
that reverts one fix; it must match exactly once — to a scratch copy of the work tree
(the main tree is never edited), runs the tests that guard that fix there with this
interpreter, and prints a table: the mutation, the tests that failed, the seconds it took.
A mutation that no test notices is a hole in the tests, and the command exits 1.

Before the mutations, the guarding tests run once on an unmutated copy: a test that fails
there proves nothing when a mutation makes it fail (``--no-baseline`` skips that run).

The copy shares what the tests need from outside the tree: this interpreter (its venv,
whose editable install would otherwise import the main tree: ``PYTHONPATH`` points at the
copy, for the test processes and every process they start) and the SQS emulator's
``node_modules`` (a symlink). It is not part of ``make test`` (each mutation starts its
processes again, 20 to 40 minutes in all): ``make mutations`` runs it. Select mutations
by substrings of their names (``NAME``) or of their tests (``-k``); ``--list`` shows them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SQS_MODULES = "deploy/local/sqs/node_modules"
PYTEST_TIMEOUT_S = 900
"""A mutated run that has not ended by then is stopped and reported as TIMEOUT."""

IDENTITY = "tests/integration/test_identity.py"
DIRECT = "tests/integration/test_ingest_direct.py"
IDEMPOTENCY = "tests/integration/test_idempotency.py"
INGEST = "tests/integration/test_ingest.py"
HOTCACHE = "tests/integration/test_hotcache.py"
WRITER_DB = "tests/integration/test_writer_database.py"
OWNERSHIP = "tests/integration/test_ownership.py"
PROXY = "tests/integration/test_proxy.py"
FORWARDING = "tests/integration/test_forwarding.py"
CACHE_BOUNDS = "tests/integration/test_cache_bounds.py"
FAULTS = "tests/integration/test_faults.py"
SQS_RULES = "tests/integration/test_sqs_rules.py"
SQSWIRE = "tests/integration/test_sqswire.py"
UNIT_ROUTES = "tests/unit/test_codec_and_routes.py"
PROCESSES = "tests/integration/test_processes.py"
SHUTDOWN = "tests/integration/test_shutdown.py"
ADMISSION = "tests/integration/test_admission.py"
UNIT_ADMISSION = "tests/unit/test_admission_estimate.py"
OVERLOAD = "tests/integration/test_overload.py"
CLOCKS = "tests/integration/test_clocks.py::test_a_process_with_a_skewed_clock_still_answers"
PROMETHEUS = "tests/observability/test_prometheus.py"
INGEST_LAG = "tests/integration/test_clocks.py::test_the_ingest_lag_is_measured_on_the_shared_clock"
UNIT_CLOCK = "tests/unit/test_clock.py"
MEMORY = "tests/integration/test_memory.py"
LEASE = "tests/integration/test_cache_lease.py"
REDIS_FULL = "tests/integration/test_redis_full.py"
SCALING_ALARMS = "tests/unit/test_scaling_alarms.py"
SCALING_SIM = "tests/unit/test_scaling_sim.py"
SCALING_TF = "tests/unit/test_scaling_terraform.py"
SCALING_POLICY = "tests/unit/test_scaling_policy.py"
SIGNAL_UNIT = "tests/unit/test_scaling_signal.py"
CALIBRATION = "tests/unit/test_scaling_calibrate.py"
SIGNAL_INTEGRATION = "tests/integration/test_scaling_signal.py"
SCALE_IN_TEST = "test_target_tracking_scales_in_after_fifteen_datapoints_below_ninety_percent"
SCALE_IN_COOLDOWN_TEST = "test_scale_in_cooldown_blocks_the_next_scale_in_and_a_scale_out_ends_it"
STEP_TEST = "test_a_step_to_ten_times_capacity_sheds_and_keeps_the_backend_busy"
HANDBACK = "tests/integration/test_handback.py"
TRUST = "tests/integration/test_message_trust.py"
WRITER_ITEMS = "tests/integration/test_writer_items.py"
LATE = "tests/integration/test_late_refusal.py"
UNIT_PACE = "tests/unit/test_worker_pace.py"
UNIT_SURVIVAL = "tests/unit/test_survival.py"
LEASES = "tests/integration/test_backend_leases.py"
LIMIT = "tests/integration/test_backend_limit.py"


@dataclass(frozen=True)
class Edit:
    """A literal edit of one file that must match exactly once (this runner's mutations
    and those of ``tests/terraform/mutate.py``): a fix moved or reworded makes the edit
    fail loudly instead of silently mutating nothing."""

    name: str
    file: str
    old: str
    new: str

    def occurrences(self, tree: Path) -> int:
        return (tree / self.file).read_text().count(self.old)

    def apply(self, tree: Path) -> None:
        count = self.occurrences(tree)
        if count != 1:
            raise SystemExit(f"{self.name}: the text to mutate occurs {count} times in {self.file}")
        path = tree / self.file
        path.write_text(path.read_text().replace(self.old, self.new))


@dataclass(frozen=True)
class Mutation(Edit):
    tests: tuple[str, ...]
    """pytest node ids, relative to the repository; at least one must fail."""


MUTATIONS = [
    # --- identity and credentials (service/auth.py, service/invalidate.py) -------------
    Mutation(
        "auth: API key compared as str (a non-ASCII key raises)",
        "service/auth.py",
        "found |= hmac.compare_digest(sent, candidate.encode())",
        "found |= hmac.compare_digest(key, candidate)",
        (f"{IDENTITY}::test_credentials_are_checked_strictly",),
    ),
    Mutation(
        "auth: JWT without exp accepted",
        "service/auth.py",
        'required = ["sub", "exp", *(',
        'required = ["sub", *(',
        (f"{IDENTITY}::test_credentials_are_checked_strictly",),
    ),
    Mutation(
        "auth: JWT audience not verified",
        "service/auth.py",
        '"verify_aud": bool(settings.auth_jwt_audience)',
        '"verify_aud": False',
        (f"{IDENTITY}::test_credentials_are_checked_strictly",),
    ),
    Mutation(
        "auth: no credentials and not disabled, the api starts anyway",
        "service/auth.py",
        "        raise SystemExit(message)",
        "        return",
        (f"{IDENTITY}::test_auth_fails_closed",),
    ),
    Mutation(
        "auth: QF_AUTH_DISABLED=true turns configured credentials off",
        "service/auth.py",
        "    if not settings.auth_enabled:\n        return Identity(",
        "    if not settings.auth_enabled or settings.auth_disabled:\n        return Identity(",
        (f"{IDENTITY}::test_auth_fails_closed",),
    ),
    Mutation(
        "auth: invalidation needs only the call permission",
        "service/invalidate.py",
        'check_access(request, "invalidate_data", public=False, permission=INVALIDATE)',
        'check_access(request, "invalidate_data", public=False)',
        (f"{IDENTITY}::test_invalidation_is_a_permission_of_its_own",),
    ),
    Mutation(
        "auth: an invalidate key may call every route",
        "service/auth.py",
        "            permissions.add(INVALIDATE)",
        "            permissions.update(EVERYTHING)",
        (f"{IDENTITY}::test_invalidation_is_a_permission_of_its_own",),
    ),
    Mutation(
        "auth: invalidate scope matched as a prefix",
        "service/auth.py",
        "if settings.auth_jwt_invalidate_scope in _scopes(claims):",
        "if any(s.startswith(settings.auth_jwt_invalidate_scope) for s in _scopes(claims)):",
        (f"{IDENTITY}::test_invalidation_is_a_permission_of_its_own",),
    ),
    Mutation(
        "identity: X-Forwarded-For read without a trusted proxy",
        "service/auth.py",
        "    if hops > 0:",
        "    if True:",
        (f"{IDENTITY}::test_a_made_up_x_forwarded_for_does_not_escape_the_rate_limit",),
    ),
    Mutation(
        "identity: the leftmost (client-written) X-Forwarded-For entry",
        "service/auth.py",
        "entries[-hops] if len(entries) >= hops else entries[0]",
        "entries[0]",
        (f"{IDENTITY}::test_behind_one_trusted_proxy_its_entry_is_the_client",),
    ),
    Mutation(
        "identity: CloudFront's unbracketed v6:port not parsed",
        "service/auth.py",
        'yield request.headers.get(settings.client_ip_header, ""), True',
        'yield request.headers.get(settings.client_ip_header, ""), False',
        (f"{IDENTITY}::test_cloudfront_viewer_address_names_the_client",),
    ),
    Mutation(
        "identity: an IPv6 client is its address, not its /64",
        "service/auth.py",
        'return str(ipaddress.ip_network(f"{address}/64", strict=False))',
        "return str(address)",
        (f"{IDENTITY}::test_cloudfront_viewer_address_names_the_client",),
    ),
    # --- idempotency keys (service/idempotency.py, service/proxy.py, queuefront/sink.py) -
    Mutation(
        "idempotency: the record is not the client's own",
        "service/idempotency.py",
        r'hashlib.sha256(f"{client.name}\x00{key}".encode(',
        r'hashlib.sha256(f"{key}".encode(',
        (f"{IDEMPOTENCY}::test_a_key_belongs_to_one_client_and_one_request",),
    ),
    Mutation(
        "idempotency: the record is not the route's own",
        "service/idempotency.py",
        "return self._keys.idempotency(route, scope.hexdigest()[:32])",
        'return self._keys.idempotency("any", scope.hexdigest()[:32])',
        (f"{IDEMPOTENCY}::test_a_key_belongs_to_one_client_and_one_request",),
    ),
    Mutation(
        "idempotency: a key reused with another request replays (no 422)",
        "service/idempotency.py",
        "            if earlier.fingerprint != print_:",
        "            if False:",
        (f"{IDEMPOTENCY}::test_a_key_belongs_to_one_client_and_one_request",),
    ),
    Mutation(
        "idempotency: the fingerprint ignores the target (path and query)",
        "service/idempotency.py",
        "for part in (method.encode(), raw_target.encode(), body):",
        "for part in (method.encode(), body):",
        (f"{IDEMPOTENCY}::test_a_key_belongs_to_one_client_and_one_request",),
    ),
    Mutation(
        "idempotency: an ingest key reused with another body is accepted",
        "service/idempotency.py",
        "if raw is not None and _decode(raw).fingerprint != print_:",
        "if False:",
        (f"{IDEMPOTENCY}::test_ingest_keys_are_per_client_and_per_body",),
    ),
    Mutation(
        "idempotency: an ingest item id is not the client's own",
        "queuefront/sink.py",
        r'f"{route}\x00{client}\x00{idempotency_key}"',
        r'f"{route}\x00{idempotency_key}"',
        (f"{IDEMPOTENCY}::test_ingest_keys_are_per_client_and_per_body",),
    ),
    Mutation(
        "idempotency: the stored answer is never replayed",
        "service/proxy.py",
        "    if claim.replay is not None:",
        "    if False:",
        (
            f"{INGEST}::test_idempotency_keys",
            f"{IDEMPOTENCY}::test_a_key_belongs_to_one_client_and_one_request",
        ),
    ),
    Mutation(
        "idempotency: a replay still sends the request to the backend",
        "service/proxy.py",
        "    if claim.replay is not None:",
        "    if claim.replay is not None and await _serve(request, route, deadline):",
        (
            f"{INGEST}::test_idempotency_keys",
            f"{IDEMPOTENCY}::test_a_key_belongs_to_one_client_and_one_request",
        ),
    ),
    Mutation(
        "idempotency: a 504 frees the key (the retry runs afresh)",
        "service/idempotency.py",
        "            unknown = Record(UNKNOWN, claim.request_id, claim.fingerprint)\n"
        "            pipe.set(claim.name, _encode(unknown), ex=claim.ttl_s)",
        "            pipe.delete(claim.name)",
        (f"{IDEMPOTENCY}::test_a_retry_after_a_504_never_calls_the_backend_again",),
    ),
    Mutation(
        "idempotency: the worker's 504 is no answer (the retry runs afresh)",
        "service/idempotency.py",
        "        return reply.status == 504",
        "        return False",
        (f"{IDEMPOTENCY}::test_a_retry_after_a_504_never_calls_the_backend_again",),
    ),
    Mutation(
        "idempotency: a retry after a 504 runs under a new request id",
        "service/idempotency.py",
        "        run_as = earlier.request_id",
        "        run_as = mine.request_id",
        (f"{IDEMPOTENCY}::test_a_retry_while_the_first_call_has_no_outcome_re_submits_it",),
    ),
    Mutation(
        "tombstone: a send given up leaves no tombstone",
        "service/tombstone.py",
        "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n",
        "",
        (f"{FAULTS}::test_frozen_sqs_gives_503_within_3_s_and_200_once_it_thaws",),
    ),
    # --- what crosses the queue (queuefront/headers.py, service/proxy.py) --------------
    Mutation(
        "headers: the api writes credentials into the queued message",
        "queuefront/headers.py",
        "_REQUEST_DROP = HOP_BY_HOP | CREDENTIALS | FRAMING",
        "_REQUEST_DROP = HOP_BY_HOP | FRAMING",
        (
            f"{PROXY}::test_round_trip_forwards_request_and_strips_credentials",
            f"{FORWARDING}::test_credentials_are_never_written_to_the_queue",
        ),
    ),
    Mutation(
        "headers: Cookie forwarded to the backend",
        "queuefront/headers.py",
        'CREDENTIALS = frozenset({"authorization", "cookie", "x-api-key"})',
        'CREDENTIALS = frozenset({"authorization", "x-api-key"})',
        (f"{PROXY}::test_round_trip_forwards_request_and_strips_credentials",),
    ),
    Mutation(
        "cache: a cached route forwards every header",
        "service/proxy.py",
        "headers = named_headers(request.headers.items(), named)",
        "headers = backend_headers(request, route, app[SETTINGS])",
        (f"{HOTCACHE}::test_a_cached_route_forwards_only_the_headers_it_names",),
    ),
    # --- what may be shared (queuefront/cache.py) ---------------------------------------
    Mutation(
        "cache: an answer with Set-Cookie is shared",
        "queuefront/cache.py",
        '        if lower == "set-cookie":\n            return False',
        '        if lower == "set-cookie":\n            pass',
        (f"{HOTCACHE}::test_answers_that_must_not_be_shared_are_never_cached",),
    ),
    Mutation(
        "cache: private / no-store answers are shared",
        "queuefront/cache.py",
        "            if directives & UNCACHEABLE_CONTROL:",
        "            if False:",
        (f"{HOTCACHE}::test_answers_that_must_not_be_shared_are_never_cached",),
    ),
    Mutation(
        "cache: Vary on a header the key does not hold is ignored",
        "queuefront/cache.py",
        'if "*" in varied or not varied <= forwarded:',
        'if "*" in varied:',
        (f"{HOTCACHE}::test_answers_that_must_not_be_shared_are_never_cached",),
    ),
    Mutation(
        "cache bounds: a serial's hash holds any number of fields",
        "queuefront/cache.py",
        "if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then\n"
        "  redis.call('DEL', KEYS[1])\n"
        "end\n",
        "",
        (f"{CACHE_BOUNDS}::test_a_serial_holds_a_bounded_number_of_responses",),
    ),
    Mutation(
        "cache bounds: a serial's hash never expires",
        "queuefront/cache.py",
        "if ttl < tonumber(ARGV[4]) then\n  redis.call('EXPIRE', KEYS[1], ARGV[4])\nend\n",
        "",
        (f"{CACHE_BOUNDS}::test_a_serial_expires_with_its_longest_lived_response",),
    ),
    Mutation(
        "cache bounds: a short-lived response shortens its serial's hash",
        "queuefront/cache.py",
        "if ttl < tonumber(ARGV[4]) then",
        "if true then",
        (f"{CACHE_BOUNDS}::test_a_serial_expires_with_its_longest_lived_response",),
    ),
    # --- the writer and its database (queuefront/sink.py, workers/writer/) -------------
    Mutation(
        "writer: identifiers unquoted",
        "queuefront/sink.py",
        """    return '"' + name.replace('"', '""') + '"'""",
        "    return name",
        (f"{WRITER_DB}::test_reserved_words_as_table_and_column_names",),
    ),
    Mutation(
        "writer: sinks not checked at start",
        "workers/writer/run.py",
        "        await check_sinks(pool, routes)\n",
        "",
        (f"{WRITER_DB}::test_writer_refuses_to_start_when_a_sink_does_not_match",),
    ),
    Mutation(
        "writer: a schema error is retried for ever",
        "workers/writer/store.py",
        "                elif attempt >= SCHEMA_ATTEMPTS:",
        "                elif False:",
        (f"{WRITER_DB}::test_a_table_gone_at_run_time_gives_batches_back_to_the_dlq",),
    ),
    Mutation(
        "writer: a schema error is taken for an outage",
        "workers/writer/store.py",
        "return state[:2] in OUTAGE_SQLSTATE_CLASSES or state in OUTAGE_SQLSTATES",
        "return True",
        (f"{WRITER_DB}::test_a_table_gone_at_run_time_gives_batches_back_to_the_dlq",),
    ),
    Mutation(
        "writer: one id in one batch counts each time",
        "queuefront/sink.py",
        "        if item.id in seen:\n            continue",
        "        if item.id in seen:\n            pass",
        (f"{INGEST}::test_retries_with_one_key_in_one_batch_count_once",),
    ),
    Mutation(
        "writer: a retry that stored nothing still counts",
        "workers/writer/store.py",
        "new_items = [i for i in unique if i.id in new_ids]",
        "new_items = list(unique)",
        (f"{INGEST}::test_idempotency_keys",),
    ),
    Mutation(
        "outbox: a batch's deltas applied again on replay (no marker)",
        "queuefront/tally.py",
        "if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return {0} end",
        "redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])",
        (f"{INGEST}::test_deltas_committed_but_never_applied_are_swept_in_once",),
    ),
    # --- ingest bodies (queuefront/sink.py, service/ingest.py, service/proxy.py) -------
    Mutation(
        "sink: a body deeper than the decoder's stack is a 500",
        "queuefront/sink.py",
        "    except RecursionError:  # the decoder's own stack limit (about 1,000 levels)\n"
        '        raise Invalid(f"body is nested deeper than {MAX_JSON_DEPTH} levels") from None\n',
        "",
        (f"{INGEST}::test_bad_ingest_bodies_get_400_naming_the_problem",),
    ),
    Mutation(
        "sink: jsonb nesting unbounded",
        "queuefront/sink.py",
        "        if depth > MAX_JSON_DEPTH:",
        "        if False:",
        (f"{WRITER_DB}::test_jsonb_values_postgres_would_refuse_get_400",),
    ),
    Mutation(
        "sink: NUL allowed in text",
        "queuefront/sink.py",
        r'        if "\x00" in value:',
        "        if False:",
        (f"{INGEST}::test_bad_ingest_bodies_get_400_naming_the_problem",),
    ),
    Mutation(
        "sink: NUL allowed in jsonb strings",
        "queuefront/sink.py",
        r'            if "\x00" in node:',
        "            if False:",
        (f"{WRITER_DB}::test_jsonb_values_postgres_would_refuse_get_400",),
    ),
    Mutation(
        "sink: NUL allowed in jsonb keys",
        "queuefront/sink.py",
        r'                if "\x00" in key:',
        "                if False:",
        (f"{WRITER_DB}::test_jsonb_values_postgres_would_refuse_get_400",),
    ),
    Mutation(
        "ingest: an item over the message limit is sent anyway",
        "service/ingest.py",
        "    if not packer.fits(encoded):",
        "    if False:",
        (f"{WRITER_DB}::test_an_item_over_the_message_limit_gets_413",),
    ),
    Mutation(
        "proxy: a request over the message limit is sent anyway",
        "service/proxy.py",
        "    if utf8_length(encoded) > limit:",
        "    if False:",
        (f"{PROXY}::test_bad_input",),
    ),
    # --- the worker (workers/priority/backend.py, handback.py) --------------------------
    Mutation(
        "backend: a 502 names the backend's address",
        "workers/priority/backend.py",
        '"bad_gateway", "the backend could not be reached")',
        '"bad_gateway", f"the backend could not be reached: {exc}")',
        (f"{OWNERSHIP}::test_bad_gateway_answers_name_no_backend_address",),
    ),
    Mutation(
        "backend: a request that cannot be sent raises out of call",
        "workers/priority/backend.py",
        "        except Exception as exc:"
        "  # a request that cannot even be sent (bad URL, headers)\n"
        '            FAILURES.note("request not forwardable", exc, traceback=True,'
        " route=env.route)\n"
        "            reply = error_reply(\n"
        '                env.id, 502, "bad_gateway", "the request could not be forwarded to the'
        ' backend"\n'
        "            )\n",
        "",
        (f"{OWNERSHIP}::test_a_request_the_backend_call_cannot_even_send_is_answered_and_deleted",),
    ),
    Mutation(
        "claim: another worker's claim is ignored",
        "workers/priority/handback.py",
        'outcomes.append(Claim("mine" if won else "elsewhere"))',
        'outcomes.append(Claim("mine"))',
        (
            f"{OWNERSHIP}::test_work_cut_short_at_shutdown_is_not_called_again",
            f"{OWNERSHIP}::test_duplicate_delivery_calls_the_backend_once",
        ),
    ),
    Mutation(
        "claim: a stored reply is ignored",
        "workers/priority/handback.py",
        "            elif stored is not None:",
        "            elif False:",
        (
            f"{OWNERSHIP}::test_a_request_with_a_stored_answer_never_reaches_the_backend",
            f"{OWNERSHIP}::test_duplicate_delivery_calls_the_backend_once",
        ),
    ),
    # --- one backend call per request, whatever fails after it (issue 16) --------------
    Mutation(
        "headers: a non-UTF-8 backend header value kept as aiohttp decoded it",
        "queuefront/headers.py",
        '                value = value.encode("utf-8", "surrogateescape").decode("latin-1")',
        "                pass",
        (
            f"{HANDBACK}::test_a_latin1_response_header_is_passed_on_after_one_backend_call",
            f"{FORWARDING}::test_a_header_that_is_not_utf8_gets_an_answer_never_a_500",
        ),
    ),
    Mutation(
        "worker: a failure after the backend call decided as if it had not started",
        "workers/priority/handle.py",
        "            if held.backend_started:\n                await self._answer_instead(",
        "            if False:\n                await self._answer_instead(",
        (f"{HANDBACK}::test_a_reply_redis_refuses_is_answered_and_never_called_again",),
    ),
    Mutation(
        "pace: a message refused when its window holds the call (judgement reversed)",
        "workers/priority/pace.py",
        "        if budget < threshold:",
        "        if not budget < threshold:",
        (
            f"{LATE}::test_a_slow_backend_gets_no_call_for_a_window_it_cannot_fit",
            f"{UNIT_PACE}::test_a_message_whose_window_cannot_hold_the_calls_is_refused",
        ),
    ),
    Mutation(
        "pace: one call that ran long refuses the route's next messages",
        "workers/priority/pace.py",
        "MIN_EVIDENCE = 2\n",
        "MIN_EVIDENCE = 1\n",
        (
            f"{LATE}::test_one_call_that_ran_into_its_window_refuses_nothing_after_it",
            f"{UNIT_PACE}::test_one_call_that_ran_long_is_no_evidence_about_the_next",
        ),
    ),
    Mutation(
        "pace: a few slow calls refuse though nearly every call fits (no share)",
        "workers/priority/survival.py",
        "        _estimated(obs, total, max(share, min_evidence / total)),",
        "        _estimated(obs, total, min_evidence / total),",
        (f"{UNIT_PACE}::test_a_few_slow_calls_among_many_that_fit_refuse_nothing",),
    ),
    Mutation(
        "pace: refused only when most calls would not fit (the median: the slower calls 504)",
        "workers/priority/survival.py",
        "        _estimated(obs, total, max(share, min_evidence / total)),",
        "        _estimated(obs, total, max(0.5, min_evidence / total)),",
        (f"{UNIT_PACE}::test_calls_slower_than_the_median_refuse_a_window_they_would_outlast",),
    ),
    Mutation(
        "pace: calls in flight not counted (a slowdown seen only once its calls end)",
        "workers/priority/pace.py",
        "            for start in self._in_flight.values()\n        ]",
        "            for start in ()\n        ]",
        (
            f"{UNIT_PACE}::test_a_slowdown_shows_in_the_calls_in_flight_before_they_complete",
            f"{UNIT_PACE}::test_the_calls_still_running_count_beside_the_first_that_ended",
        ),
    ),
    Mutation(
        "pace: the calls running counted from their start (the long ones weigh too much)",
        "workers/priority/survival.py",
        "        at_risk = reached(ends, ends_w, u) - reached(entries, entries_w, u)",
        "        at_risk = reached(ends, ends_w, u)",
        (f"{UNIT_SURVIVAL}::test_a_steady_stream_reads_as_its_own_90th_percentile",),
    ),
    Mutation(
        "pace: calls running past everything remembered taken to end now (the brownout's 504s)",
        "workers/priority/survival.py",
        "        return age * factor",
        "        return age",
        (
            f"{UNIT_PACE}::test_a_slowdown_shows_in_the_calls_in_flight_before_they_complete",
            f"{UNIT_PACE}::test_the_calls_still_running_count_beside_the_first_that_ended",
            f"{UNIT_SURVIVAL}::test_calls_running_past_a_full_memory_vary_as_the_remembered_ones_did",
            f"{SCALING_POLICY}::test_every_shipped_scenario_holds_its_criteria[backend-brownout]",
        ),
    ),
    Mutation(
        "pace: calls running past everything remembered have no known end (a load's 503s)",
        "workers/priority/survival.py",
        "        return age * factor",
        "        return math.inf",
        (
            f"{UNIT_PACE}::test_calls_a_little_past_a_memory_that_never_varied_refuse_little",
            f"{UNIT_SURVIVAL}::test_calls_running_past_a_full_memory_vary_as_the_remembered_ones_did",
        ),
    ),
    Mutation(
        "pace: a few odd calls remembered read as the tail of the calls running",
        "workers/priority/survival.py",
        "    if lasted < share * len(tail):\n",
        "    if lasted == 0:\n",
        (f"{UNIT_PACE}::test_a_few_odd_calls_remembered_say_nothing_about_the_calls_running",),
    ),
    Mutation(
        "pace: one long call that ended refuses every window while young calls run",
        "workers/priority/survival.py",
        "        _possible(obs, sorted(remembered), share, min_evidence, remember),\n",
        "        math.inf,\n",
        (f"{UNIT_PACE}::test_one_call_that_ran_long_beside_calls_running_young_refuses_nothing",),
    ),
    Mutation(
        "pace: a call running is taken to reach only its stretched age (the memory not read)",
        "workers/priority/survival.py",
        "    return tail[first + max(0, math.ceil(lasted * (1.0 - share)) - 1)]",
        "    return age * factor",
        (f"{UNIT_PACE}::test_calls_running_within_what_the_route_remembers_end_as_it_remembers",),
    ),
    Mutation(
        "pace: the spread set by the fastest and slowest calls remembered (odd calls set it)",
        "workers/priority/survival.py",
        "    low = durations[int(len(durations) * share)]",
        "    low = durations[0]",
        (f"{UNIT_SURVIVAL}::test_a_few_odd_calls_do_not_set_the_spread",),
    ),
    Mutation(
        "pace: no tail past the evidence (the memory not read)",
        "workers/priority/survival.py",
        "    if not full:\n        return age\n",
        "    if True:\n        return age\n",
        (
            f"{UNIT_PACE}::test_calls_running_within_what_the_route_remembers_end_as_it_remembers",
            f"{UNIT_SURVIVAL}::test_past_the_evidence_the_memory_says_how_long_calls_go_on",
        ),
    ),
    Mutation(
        "pace: a memory not yet full read as one (a worker's first wave refuses)",
        "workers/priority/survival.py",
        "    full = len(tail) >= remember\n    factor = stretch(tail, share, remember)\n",
        "    full = True\n    factor = stretch(tail, share, 0)\n",
        # the worker's and the simulator's shortcuts hold the same rule: caught here only
        (f"{UNIT_SURVIVAL}::test_calls_running_past_a_full_memory_vary_as_the_remembered_ones_did",),
    ),
    Mutation(
        "pace: nothing remembered past the window",
        "workers/priority/pace.py",
        "        self._remembered.append(end - started)\n",
        "",
        (f"{UNIT_PACE}::test_a_slowdown_shows_in_the_calls_in_flight_before_they_complete",),
    ),
    Mutation(
        "pace: the shortcut calls a message the estimate would refuse",
        "workers/priority/pace.py",
        "        return max(remembered, ended, oldest * self._stretch())",
        "        return max(remembered, ended, oldest)",
        (f"{UNIT_PACE}::test_the_calls_still_running_count_beside_the_first_that_ended",),
    ),
    Mutation(
        "pace: old calls never leave the window (a slow spell refuses for ever)",
        "workers/priority/pace.py",
        "        while self._recent and now - self._recent[0][0] > self._window_s:",
        "        while False:",
        (
            f"{LATE}::test_after_the_backend_recovers_requests_are_called_and_answered_again",
            f"{UNIT_PACE}::test_nothing_refuses_once_the_slow_calls_leave_the_window",
        ),
    ),
    Mutation(
        "pace: a cold worker refuses on the age of calls in flight",
        "workers/priority/pace.py",
        "        if self.measured_at is None:\n            return Judgement(True, 0.0)",
        "        if False:\n            return Judgement(True, 0.0)",
        (f"{UNIT_PACE}::test_a_cold_worker_never_refuses_not_even_on_calls_in_flight",),
    ),
    Mutation(
        "pace: a cold worker refuses what it cannot judge",
        "workers/priority/pace.py",
        "            return Judgement(True, 0.0)  # cold",
        "            return Judgement(False, 0.0)  # cold",
        (
            f"{LATE}::test_a_cold_worker_calls_whatever_it_gets",
            f"{UNIT_PACE}::test_a_cold_worker_never_refuses_not_even_on_calls_in_flight",
        ),
    ),
    Mutation(
        "pace: one estimate for every route (a slow route refuses a fast one's messages)",
        "workers/priority/pace.py",
        "    def of(self, route: str) -> Pace:\n",
        "    def of(self, route: str) -> Pace:\n        route = \"\"\n",
        (f"{UNIT_PACE}::test_one_routes_slow_calls_never_refuse_another_routes_messages",),
    ),
    Mutation(
        "worker: a message refused late is not deleted",
        "workers/priority/handle.py",
        "            await self._handback.hand_back(env, reply)\n        self._done(held)\n\n"
        "    def _expired(",
        "            await self._handback.hand_back(env, reply)\n"
        "        self.claimed.pop(held, None)\n        self._keeper.untrack(held)\n\n"
        "    def _expired(",
        (f"{LATE}::test_a_slow_backend_gets_no_call_for_a_window_it_cannot_fit",),
    ),
    # --- the shared backend limit (workers/priority/leases.py) ---------------------------
    Mutation(
        "lease: the limit not checked",
        "workers/priority/leases.py",
        "  if free <= 0 then break end",
        "  if false then break end",
        (
            f"{LEASES}::test_the_limit_holds_across_holders_and_everyone_is_served",
            f"{LIMIT}::test_two_workers_never_make_more_calls_than_the_limit",
        ),
    ),
    Mutation(
        "lease: not released after the call",
        "workers/priority/handle.py",
        "            if lease is not None and self._leases is not None:\n"
        "                self._leases.release(lease)",
        "            pass",
        (f"{LIMIT}::test_two_workers_never_make_more_calls_than_the_limit",),
    ),
    Mutation(
        "lease: not renewed",
        "workers/priority/leases.py",
        "            renewed = list(self._held) if renewing else []",
        "            renewed: list[str] = []",
        (
            f"{LEASES}::test_a_live_holder_keeps_its_lease_past_the_ttl",
            f"{LEASES}::test_renewal_puts_back_the_leases_a_restarted_redis_lost",
        ),
    ),
    Mutation(
        "lease: a message that waits past its window is called anyway",
        "workers/priority/handle.py",
        "        wait_s = max(left_s - judgement.service_s, min(LEASE_TRY_S, left_s))",
        "        wait_s = left_s + 30",
        (f"{LIMIT}::test_a_message_that_gets_no_lease_in_its_window_is_refused_uncalled",),
    ),
    Mutation(
        "lease: expired leases never dropped (a killed worker's count for ever)",
        "workers/priority/leases.py",
        "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])",
        "",
        (
            f"{LEASES}::test_a_dead_holders_leases_free_within_the_ttl",
            f"{LIMIT}::test_a_killed_workers_leases_free_within_the_ttl",
        ),
    ),
    Mutation(
        "lease: a release not announced (waiting workers only find it on their retry)",
        "workers/priority/leases.py",
        "  redis.call('PUBLISH', ARGV[1], freed)",
        "  freed = freed",
        (f"{LEASES}::test_a_release_wakes_another_holders_waiter_at_once",),
    ),
    Mutation(
        "lease: waiting slots served last come first",
        "workers/priority/leases.py",
        "            waiter = self._waiters.popleft()\n            if not waiter.done():",
        "            waiter = self._waiters.pop()\n            if not waiter.done():",
        (f"{LEASES}::test_a_holders_waiting_slots_are_served_first_come_first_served",),
    ),
    Mutation(
        "lease: a grant whose slot gave up is kept (counts against the limit for ever)",
        "workers/priority/leases.py",
        "        self.release(lease)\n\n    async def _pause",
        "        pass\n\n    async def _pause",
        (f"{LEASES}::test_a_lease_granted_after_its_slot_gave_up_goes_back",),
    ),
    Mutation(
        "lease: the backend called without a lease when none came",
        "workers/priority/handle.py",
        "            if lease is None:\n                await self._refuse_busy(held, env)\n"
        "                return\n",
        "            if False:\n                pass\n",
        (f"{LIMIT}::test_a_message_that_gets_no_lease_in_its_window_is_refused_uncalled",),
    ),
    Mutation(
        "handback: a reply Redis refuses to store is retried until the deadline",
        "workers/priority/handback.py",
        "                if not refusals_pass and not redis_away(exc):",
        "                if False:",
        (f"{HANDBACK}::test_a_reply_redis_refuses_is_answered_and_never_called_again",),
    ),
    Mutation(
        "backend: the body is read without a bound",
        "workers/priority/backend.py",
        "            if size > limit:",
        "            if False:",
        (f"{HANDBACK}::test_a_backend_answer_larger_than_the_reply_limit_gets_502",),
    ),
    # --- what reaches the backend (issue 16) --------------------------------------------
    Mutation(
        "forwarding: client-written forwarding headers passed on",
        "queuefront/headers.py",
        "    return _REQUEST_DROP | FORWARDING | (OVERRIDES - named)",
        "    return _REQUEST_DROP | (OVERRIDES - named)",
        (
            f"{FORWARDING}::test_the_backend_is_told_who_the_client_is_by_the_api_alone",
            f"{FORWARDING}::test_what_the_api_queues_carries_no_client_written_forwarding",
            f"{FORWARDING}::test_behind_trusted_proxies_the_backend_gets_what_they_saw",
        ),
    ),
    Mutation(
        "forwarding: override and rewrite headers passed on everywhere",
        "queuefront/headers.py",
        "    return _REQUEST_DROP | FORWARDING | (OVERRIDES - named)",
        "    return _REQUEST_DROP | FORWARDING",
        (f"{FORWARDING}::test_what_the_api_queues_carries_no_client_written_forwarding",),
    ),
    Mutation(
        "forwarding: the override a route names withheld",
        "queuefront/headers.py",
        "    return _REQUEST_DROP | FORWARDING | (OVERRIDES - named)",
        "    return _REQUEST_DROP | FORWARDING | OVERRIDES",
        (f"{FORWARDING}::test_the_backend_is_told_who_the_client_is_by_the_api_alone",),
    ),
    Mutation(
        "forwarding: X-Forwarded-For is the TCP peer whatever the proxies",
        "service/forwarding.py",
        "    address = client_ip(request, settings)",
        "    address = request.remote",
        (f"{FORWARDING}::test_behind_trusted_proxies_the_backend_gets_what_they_saw",),
    ),
    Mutation(
        "forwarding: X-Forwarded-Proto taken from the client",
        "service/forwarding.py",
        '_nearest(request, "X-Forwarded-Proto").lower() if trusted_proxies else ""',
        '_nearest(request, "X-Forwarded-Proto").lower() if True else ""',
        (f"{FORWARDING}::test_the_backend_is_told_who_the_client_is_by_the_api_alone",),
    ),
    Mutation(
        "idempotency: a key that is not UTF-8 used as it was decoded",
        "service/idempotency.py",
        "    key = text_value(raw)",
        "    key = raw",
        (f"{FORWARDING}::test_a_header_that_is_not_utf8_gets_an_answer_never_a_500",),
    ),
    Mutation(
        "auth: a bearer token that is not ASCII handed to PyJWT",
        "service/auth.py",
        "    if not token.isascii():",
        "    if False:",
        (f"{FORWARDING}::test_a_header_that_is_not_utf8_gets_an_answer_never_a_500",),
    ),
    Mutation(
        "routes: a route may forward what the api writes itself",
        "queuefront/routes.py",
        "        if name.lower() in NEVER_FORWARDED:",
        "        if False:",
        (f"{UNIT_ROUTES}::test_bad_route_tables_name_the_problem",),
    ),
    # --- messages are claims, not instructions (issue 16) ------------------------------
    Mutation(
        "trust: a message's cache key taken as it is",
        "workers/priority/trust.py",
        '        if serial == spec.key or not serial:\n            raise Refused("cache",',
        '        if False:\n            raise Refused("cache",',
        (f"{TRUST}::test_forged_messages_are_refused_and_never_executed",),
    ),
    Mutation(
        "trust: a message's cache field taken as it is",
        "workers/priority/trust.py",
        "        if spec.field != cache.field(route.name, env.path, vary):",
        "        if False:",
        (f"{TRUST}::test_forged_messages_are_refused_and_never_executed",),
    ),
    Mutation(
        "trust: a message's cache TTL taken as it is",
        "workers/priority/trust.py",
        "            ttl_s=route.cache.ttl_s,",
        "            ttl_s=spec.ttl_s,",
        (f"{TRUST}::test_an_honest_cached_message_is_stored_as_the_route_table_says",),
    ),
    Mutation(
        "trust: replies published on any channel",
        "workers/priority/trust.py",
        "        if tail == env.reply_to or not _CHANNEL_TAIL.fullmatch(tail):",
        "        if False:",
        (f"{TRUST}::test_forged_messages_are_refused_and_never_executed",),
    ),
    Mutation(
        "trust: any backend path the message names",
        "workers/priority/trust.py",
        "        if not target_pattern(upstream_template(route)).fullmatch(path):",
        "        if False:",
        (f"{TRUST}::test_forged_messages_are_refused_and_never_executed",),
    ),
    Mutation(
        "trust: a forged message's override headers passed on",
        "workers/priority/trust.py",
        "    drop = _ALWAYS_DROPPED | (OVERRIDES - route.named_forwards)",
        "    drop = _ALWAYS_DROPPED",
        (f"{TRUST}::test_a_forged_message_passes_no_header_the_api_would_withhold",),
    ),
    Mutation(
        "trust: messages not checked at all",
        "workers/priority/handle.py",
        "            env = self._check.check(decode_request(held.message.body))",
        "            env = decode_request(held.message.body)",
        (f"{TRUST}::test_forged_messages_are_refused_and_never_executed",),
    ),
    Mutation(
        "writer: items not checked before the batch insert",
        "workers/writer/gather.py",
        "            sink.check_item(route.sink, item)",
        "            pass",
        (f"{WRITER_ITEMS}::test_items_the_insert_cannot_take_are_refused_alone",),
    ),
    Mutation(
        "writer: received_at not bounded",
        "queuefront/sink.py",
        "    if not 0 <= at <= LATEST_RECEIVED_AT:  # NaN fails this too",
        "    if False:",
        (f"{WRITER_ITEMS}::test_items_the_insert_cannot_take_are_refused_alone",),
    ),
    Mutation(
        "consumer: receive errors retried after a fixed pause",
        "queuefront/consumer.py",
        '    first_s=RECEIVE_ERROR_BACKOFF_S, cap_s=RECEIVE_ERROR_BACKOFF_MAX_S, jitter="equal"',
        '    first_s=RECEIVE_ERROR_BACKOFF_S, cap_s=RECEIVE_ERROR_BACKOFF_MAX_S, jitter="none"',
        (
            "tests/unit/test_consumer_backoff.py::test_consumers_that_fail_together_retry_spread_out",
        ),
    ),
    # --- the pod's reply listener (service/replies.py) ----------------------------------
    Mutation(
        "replies: an undecodable stored reply raises in the listener",
        "service/replies.py",
        "        try:\n"
        "            reply = decode_reply(data)\n"
        "        except (msgspec.DecodeError, TypeError, ValueError) as exc:\n"
        '            metrics.REPLIES.labels("undecodable").inc()\n'
        '            FAILURES.note("undecodable reply dropped", exc)\n'
        "            return False\n",
        "        reply = decode_reply(data)\n",
        (f"{OWNERSHIP}::test_an_undecodable_stored_reply_does_not_stop_the_pod",),
    ),
    # --- the upstream target (queuefront/upstream.py) -----------------------------------
    Mutation(
        "upstream: C0 controls and DEL forwarded",
        "queuefront/upstream.py",
        "    if any(b < 0x20 or b == 0x7F for b in decoded):",
        "    if False:",
        (
            f"{UNIT_ROUTES}::test_unforwardable_input_is_refused",
            f"{FORWARDING}::test_unforwardable_targets_get_400_before_anything_is_enqueued",
        ),
    ),
    Mutation(
        "upstream: C1 controls forwarded",
        "queuefront/upstream.py",
        '    if _C1.search(decoded.decode("utf-8", errors="ignore")):',
        "    if False:",
        (
            f"{UNIT_ROUTES}::test_unforwardable_input_is_refused",
            f"{FORWARDING}::test_unforwardable_targets_get_400_before_anything_is_enqueued",
        ),
    ),
    Mutation(
        "upstream: dot segments forwarded",
        "queuefront/upstream.py",
        '        if any(part in (b".", b"..") for part in parts):',
        "        if False:",
        (
            f"{UNIT_ROUTES}::test_unforwardable_input_is_refused",
            f"{FORWARDING}::test_unforwardable_targets_get_400_before_anything_is_enqueued",
        ),
    ),
    Mutation(
        "upstream: dot segments only as whole encoded segments",
        "queuefront/upstream.py",
        r'        parts = re.split(rb"[/\\]", decoded)',
        "        parts = [decoded]",
        (
            f"{UNIT_ROUTES}::test_unforwardable_input_is_refused",
            f"{FORWARDING}::test_unforwardable_targets_get_400_before_anything_is_enqueued",
        ),
    ),
    # --- memory and Redis under abuse (issue 16, section 6 and its low items) -----------
    Mutation(
        "writer: no statement timeout on the Postgres pool (a hung insert holds its batch)",
        "workers/writer/run.py",
        "        command_timeout=settings.db_command_timeout_s,\n",
        "",
        (f"{WRITER_DB}::test_a_hung_statement_is_cancelled_and_its_batch_stored_once_later",),
    ),
    Mutation(
        "auth: a JWT secret shorter than 256 bits accepted",
        "service/auth.py",
        "    if settings.auth_jwt_secret and secret_bytes < MIN_JWT_SECRET_BYTES:",
        "    if False:",
        (f"{IDENTITY}::test_a_jwt_secret_shorter_than_256_bits_is_refused_at_start",),
    ),
    Mutation(
        "rate limit: failed credentials charged to no budget",
        "service/gates.py",
        "        await _charge(request, address_identity(request, app[SETTINGS]), route_name)\n",
        "",
        (f"{IDENTITY}::test_failed_credentials_are_charged_to_their_address_not_to_whom_they_claim",),
    ),
    Mutation(
        "rate limit: anonymous clients unlimited by default",
        "queuefront/settings.py",
        "ANON_RATE_LIMIT_RPS = 50.0",
        "ANON_RATE_LIMIT_RPS = 0.0",
        (f"{IDENTITY}::test_public_routes_are_rate_limited_by_default",),
    ),
    Mutation(
        "body limit: a route's max_body_bytes ignored",
        "service/gates.py",
        "        limit_bytes=min(max_body_bytes or ceiling, ceiling),",
        "        limit_bytes=ceiling,",
        (f"{MEMORY}::test_the_demo_login_refuses_a_large_body_unread",),
    ),
    Mutation(
        "body limit: a chunked body read past the limit",
        "service/bodies.py",
        "        if size > limit_bytes:",
        "        if False:",
        (f"{MEMORY}::test_the_demo_login_refuses_a_large_body_unread",),
    ),
    Mutation(
        "body limit: the demo login takes a body of any size",
        "config/routes.toml",
        "max_body_bytes = 4096\n",
        "",
        (f"{MEMORY}::test_the_demo_login_refuses_a_large_body_unread",),
    ),
    Mutation(
        "pending bytes: no budget",
        "service/bodies.py",
        "        if n and self.used_bytes + n > self.limit_bytes:",
        "        if False:",
        (f"{MEMORY}::test_bodies_past_the_pending_bytes_budget_get_503_before_they_are_read",),
    ),
    Mutation(
        "pending bytes: a request waiting for its reply stays charged for its body",
        "service/proxy.py",
        "its bytes leave the budget\n            body.release()\n",
        "its bytes leave the budget\n",
        (f"{MEMORY}::test_a_request_waiting_for_its_reply_holds_none_of_its_body",),
    ),
    Mutation(
        "tally: a poll's hash never expires",
        "queuefront/tally.py",
        "  redis.call('EXPIRE', KEYS[i + 1], ARGV[3])\n",
        "",
        (f"{MEMORY}::test_a_tally_expires_after_its_last_vote_and_comes_back_from_postgres",),
    ),
    Mutation(
        "tally: an expired poll's tally restarts from the new vote alone",
        "queuefront/outbox.py",
        "        if absent and self._revive is not None:",
        "        if False:",
        (f"{MEMORY}::test_a_tally_expires_after_its_last_vote_and_comes_back_from_postgres",),
    ),
    Mutation(
        "tally: reconcile brings back polls silent for longer than the TTL",
        "queuefront/admin.py",
        "live = {k: v for k, v in counts.items() if quiet_s[k] < store.ttl_s}",
        "live = dict(counts)",
        (f"{MEMORY}::test_reconcile_brings_back_only_polls_voted_in_within_the_ttl",),
    ),
    Mutation(
        "cache lease: not renewed while the fetch runs",
        "service/hotcache.py",
        'self._hold(lease, holder, deadline), name="lease-heartbeat"',
        'asyncio.sleep(0), name="lease-heartbeat"',
        (f"{LEASE}::test_a_backend_slower_than_the_lease_is_called_once_across_pods",),
    ),
    Mutation(
        "redis full: proxied requests queued anyway (each waits for its 504)",
        "service/proxy.py",
        "    if app[WRITE_PROBE].full:",
        "    if False:",
        (f"{REDIS_FULL}::test_a_full_redis_gets_503_naming_it_and_votes_and_reads_still_work",),
    ),
    Mutation(
        "redis full: a refused write answered as a Redis that did not answer",
        "service/deadlines.py",
        "    if isinstance(exc, OutOfMemoryError):",
        "    if False:",
        (f"{REDIS_FULL}::test_a_full_redis_gets_503_naming_it_and_votes_and_reads_still_work",),
    ),
    Mutation(
        "redis full: the alert never fires",
        "deploy/prometheus/alerts.yml",
        "expr: max(queuefront_redis_refusing_writes) > 0",
        "expr: max(queuefront_redis_refusing_writes) > 1",
        ("tests/observability/test_prometheus.py::test_promtool_accepts[test-rules]",),
    ),
    Mutation(
        "redis full: anonymous votes refused because the rate limit cannot write",
        "service/ratelimit.py",
        "        except OutOfMemoryError as exc:",
        "        except ZeroDivisionError as exc:",
        (f"{REDIS_FULL}::test_a_full_redis_gets_503_naming_it_and_votes_and_reads_still_work",),
    ),
    # --- end of section 6 ---------------------------------------------------------------
    # --- SQS acknowledgements, outcomes and rules (issue 16: 3, 4, 6) -------------------
    Mutation(
        "sqs: the lean plane re-sends a SendMessageBatch after a read timeout",
        "queuefront/sqs.py",
        "send = partial(wire.call, attempts=1, read_timeout_s=send_read_timeout_s)",
        "send = wire.call",
        (
            f"{SQS_RULES}::test_a_late_acknowledgement_is_awaited_and_not_re_sent[lean]",
            f"{SQS_RULES}::test_a_vote_whose_acknowledgement_is_slow_or_lost_counts_once[slow]",
            f"{SQSWIRE}::test_a_frozen_endpoint_fails_within_the_timeouts_and_attempts",
        ),
    ),
    Mutation(
        "sqs: botocore's send client retries (a lost answer is sent again)",
        "queuefront/sqs.py",
        'retries={"mode": "standard", "total_max_attempts": 1},',
        'retries={"mode": "standard", "total_max_attempts": 3},',
        (f"{SQS_RULES}::test_a_lost_answer_is_unknown_and_never_re_sent[botocore]",),
    ),
    Mutation(
        "sqs: botocore's sends wait only the client's 1 s read timeout",
        "queuefront/sqs.py",
        "                    read_timeout=send_read_timeout_s,",
        "                    read_timeout=read_s,",
        (f"{SQS_RULES}::test_a_late_acknowledgement_is_awaited_and_not_re_sent[botocore]",),
    ),
    Mutation(
        "sqs: an unknown outcome is retried like a refusal",
        "queuefront/sqs.py",
        '                if verdict == "unknown":',
        "                if False:",
        (f"{SQS_RULES}::test_a_lost_answer_is_unknown_and_never_re_sent[lean]",),
    ),
    Mutation(
        "sqs: throttling read as a final refusal",
        "queuefront/sqs.py",
        '            return "throttled"',
        '            return "final"',
        (f"{SQS_RULES}::test_throttling_is_retried_in_either_shape[lean]",),
    ),
    Mutation(
        "sqs: a retry's failure fails the entries SQS accepted",
        "queuefront/sqs.py",
        "                for i in todo:\n                    outcomes[i] = exc\n",
        "                if attempt > 1:\n                    raise\n"
        "                for i in todo:\n                    outcomes[i] = exc\n",
        (f"{SQS_RULES}::test_a_retried_entry_fails_alone[lean]",),
    ),
    Mutation(
        "sqs: a batch's size counted in characters (over 1 MiB of bytes, all refused)",
        "queuefront/sqs.py",
        "Batcher(self._send_batch, linger_s=self.linger_s, size_of=_utf8_len)",
        "Batcher(self._send_batch, linger_s=self.linger_s, size_of=len)",
        (f"{SQS_RULES}::test_batches_stay_within_sqs_s_mebibyte[lean]",),
    ),
    Mutation(
        "tombstone: written without looking at the worker's claim",
        "service/tombstone.py",
        "if redis.call('EXISTS', KEYS[2]) == 1 then return {'claimed'} end\n",
        "",
        (
            f"{SQS_RULES}::test_a_tombstone_never_lands_on_a_claimed_request",
            f"{SQS_RULES}::test_a_slow_acknowledgement_is_not_a_failure[lean-3.5]",
        ),
    ),
    Mutation(
        "proxy: a send not acknowledged in time is a 503 though a worker runs it",
        "service/proxy.py",
        'log.info("send not acknowledged, but a worker has the request: waiting")\n'
        "        return None",
        'log.info("send not acknowledged, but a worker has the request: waiting")\n'
        '        raise unavailable("sqs", "enqueue")',
        (f"{SQS_RULES}::test_a_slow_acknowledgement_is_not_a_failure[lean-3.5]",),
    ),
    Mutation(
        "proxy: a lost acknowledgement is settled before a worker could take the request",
        "service/proxy.py",
        "        if left_s > 0:",
        "        if False:",
        (f"{SQS_RULES}::test_a_lost_acknowledgement_still_answers_with_the_reply",),
    ),
    Mutation(
        "packer: a message whose answer was lost is not sent again (a keyless vote 504s)",
        "service/packer.py",
        "        for _ in range(UNKNOWN_RESENDS):",
        "        for _ in range(0):",
        (f"{SQS_RULES}::test_a_vote_whose_acknowledgement_is_slow_or_lost_counts_once[cut]",),
    ),
    Mutation(
        "packer: one refused item fails its message-mates",
        "service/packer.py",
        "            if not exc.sender_fault or len(items) == 1:",
        "            if True:",
        (f"{SQS_RULES}::test_an_item_sqs_refuses_fails_alone",),
    ),
    Mutation(
        "envelope: U+FFFE and U+FFFF left raw in message bodies",
        "queuefront/envelope.py",
        '    if b"\\xef\\xbf" not in encoded:',
        "    if True:",
        (
            f"{UNIT_ROUTES}::test_every_message_obeys_sqs_s_character_rule_and_means_the_same",
            f"{SQS_RULES}::test_forbidden_characters_arrive_intact_and_fail_nobody",
        ),
    ),
    Mutation(
        "handback: a keyed request's reply lives only QF_REPLY_TTL_S",
        "workers/priority/handback.py",
        "ttl_s = max(self._reply_ttl_s, min(env.keep_s, KEEP_REPLY_MAX_S))",
        "ttl_s = self._reply_ttl_s",
        (f"{SQS_RULES}::test_a_keyed_retry_long_after_the_504_replays_the_answer",),
    ),
    Mutation(
        "handback: a keyed request's claim lives only 60 s past its deadline",
        "workers/priority/handback.py",
        "CLAIM_GRACE_S, min(env.keep_s, KEEP_REPLY_MAX_S))",
        "CLAIM_GRACE_S)",
        (f"{SQS_RULES}::test_a_keyed_retry_long_after_the_504_replays_the_answer",),
    ),
    Mutation(
        "proxy: the envelope does not ask to keep a keyed request's reply",
        "service/proxy.py",
        "        keep_s=keep_reply_s,",
        "        keep_s=0,",
        (f"{SQS_RULES}::test_a_keyed_retry_long_after_the_504_replays_the_answer",),
    ),
    Mutation(
        "idempotency: a reply answered in time is kept for the key's life as well",
        "service/idempotency.py",
        "            pipe.expire(self._keys.reply(claim.request_id), reply_ttl_s)",
        "            pass",
        (f"{SQS_RULES}::test_a_keyed_retry_long_after_the_504_replays_the_answer",),
    ),
    Mutation(
        "idempotency: a retryable 4xx (429, 401, 409) is replayed for the key's life",
        "service/idempotency.py",
        "    return reply.status not in RETRYABLE_4XX",
        "    return True",
        (f"{SQS_RULES}::test_which_backend_answers_a_key_keeps",),
    ),
    Mutation(
        "idempotency: every 4xx released (a 422 runs again)",
        "service/idempotency.py",
        "    return reply.status not in RETRYABLE_4XX",
        "    return reply.status < 400",
        (f"{SQS_RULES}::test_which_backend_answers_a_key_keeps",),
    ),
    # --- the route table (queuefront/routes.py) -----------------------------------------
    Mutation(
        "routes: a tallied field's domain unbounded in size",
        "queuefront/routes.py",
        "            if values is None or values > MAX_TALLY_VALUES:",
        "            if values is None:",
        (f"{UNIT_ROUTES}::test_bad_route_tables_name_the_problem",),
    ),
    # --- start-up and restarts on a busy machine (service/__main__.py, workers/) --------
    Mutation(
        "worker: at shutdown, what it took ahead is given back while its own polls are out",
        "workers/priority/loop.py",
        "        await asyncio.gather(*receivers, return_exceptions=True)"
        "  # polls are never abandoned\n"
        "        with contextlib.suppress(TimeoutError):\n"
        "            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):\n"
        "                await self._until(self._idle)\n"
        "        await tasks.stop(dispatcher)  # no new work starts from here on\n",
        "        await tasks.stop(dispatcher)\n"
        "        await asyncio.wait(receivers, timeout=0.5)\n"
        "        self._release_buffered()\n"
        "        await asyncio.gather(*receivers, return_exceptions=True)\n"
        "        with contextlib.suppress(TimeoutError):\n"
        "            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):\n"
        "                await self._until(lambda: not self._running)\n",
        (f"{SHUTDOWN}::test_a_stopping_worker_loses_none_of_the_messages_it_took_ahead",),
    ),
    Mutation(
        "api: a public port that cannot be bound is found only after the pod's start-up",
        "service/__main__.py",
        "        sys.exit(CANNOT_BIND_EXIT_STATUS)",
        "        return sock",
        (f"{PROCESSES}::test_processes_that_cannot_start_fail_the_supervisor",),
    ),
    Mutation(
        "api: ready before its public port listens",
        "service/health.py",
        "    if public is not None and not listening(public):",
        "    if False:",
        (f"{PROCESSES}::test_a_pod_is_ready_only_once_its_public_port_listens",),
    ),
    # --- votes straight from API Gateway (workers/writer/direct.py; issue 19 §6) ---------
    Mutation(
        "writer: message attributes not received (API Gateway's votes look undecodable)",
        "workers/writer/run.py",
        'queue.message_attributes = ("All",)',
        "queue.message_attributes = ()",
        (f"{DIRECT}::test_votes_from_api_gateway_are_stored_once_and_tallied",),
    ),
    Mutation(
        "writer: a direct vote's id from the SQS message, not API Gateway's request id",
        "workers/writer/direct.py",
        "            item=item_id(request_id),",
        "            item=str(uuid.uuid4()),",
        (f"{DIRECT}::test_votes_from_api_gateway_are_stored_once_and_tallied",),
    ),
    Mutation(
        "writer: direct bodies stored without the sink's check",
        "workers/writer/direct.py",
        "        raise Refused(REASON_INVALID, str(exc)) from None",
        "        return route, IngestItem(\n"
        "            id=item_id(request_id), received_at=received_at, fields={}\n"
        "        )",
        (f"{DIRECT}::test_a_bad_vote_is_refused_to_the_dlq_with_its_reason",),
    ),
    Mutation(
        "writer: a refused vote left for SQS's redrive (no reason, three receives)",
        "workers/writer/settle.py",
        "    to_dlq = [p for p in batch if p.dead_letter and dlq is not None]",
        "    to_dlq = [p for p in batch if p.dead_letter and dlq is None]",
        (f"{DIRECT}::test_a_bad_vote_is_refused_to_the_dlq_with_its_reason",),
    ),
    Mutation(
        "writer: refused credentials taken for a bad batch (votes walk to the DLQ)",
        "workers/writer/store.py",
        "    return isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError)",
        "    return False",
        (
            "tests/integration/test_writer_credentials.py::"
            "test_a_refused_login_stops_the_writer_and_sends_nothing_to_the_dlq",
        ),
    ),
    Mutation(
        "writer: a redriven dead letter not recognised (its attributes are gone)",
        "workers/writer/direct.py",
        "    return from_dead_letter(message.body)",
        "    return None",
        (f"{DIRECT}::test_a_dead_letter_sent_back_is_validated_again",),
    ),
    # --- admission reopens by itself (issue 16, §1) --------------------------------------
    Mutation(
        "admission: a stale estimate that refuses lets no probe through",
        "service/admission.py",
        "        if self._probe(wait, window_s):",
        "        if False and self._probe(wait, window_s):",
        (
            f"{ADMISSION}::test_admission_reopens_after_a_slow_spell",
            f"{UNIT_ADMISSION}::test_a_stale_estimate_lets_one_probe_through_per_window",
        ),
    ),
    Mutation(
        "drain: the service time averages every completion ever seen",
        "queuefront/drain.py",
        "        while self._recent and seen_at - self._recent[0][0] > SERVICE_WINDOW_S:",
        "        while False:",
        (
            f"{ADMISSION}::test_admission_reopens_after_a_slow_spell",
            f"{UNIT_ADMISSION}::test_the_service_time_is_the_mean_of_recent_completions_only",
        ),
    ),
    Mutation(
        "admission: probes while the estimate is fresh (a real overload)",
        "service/admission.py",
        "            or not self.estimate.stale(now)\n",
        "",
        (
            f"{UNIT_ADMISSION}::test_a_fresh_slow_estimate_refuses_without_probes",
            f"{OVERLOAD}::test_predicted_wait_past_the_window_is_refused_while_high_work_gets_through",
        ),
    ),
    Mutation(
        "admission: probes not limited to one per pod per window",
        "service/admission.py",
        "            or now < self._next_probe_at\n",
        "",
        (f"{UNIT_ADMISSION}::test_a_stale_estimate_lets_one_probe_through_per_window",),
    ),
    Mutation(
        "admission: probes while the queue itself is too long",
        "service/admission.py",
        "            or wait > usable_s(window_s)\n",
        "",
        (f"{UNIT_ADMISSION}::test_no_probe_when_the_queue_itself_is_too_long_or_no_worker_reports",),
    ),
    Mutation(
        "admission: a fifth of every window kept free (16 s calls in 20 s get no room)",
        "service/admission.py",
        "    return window_s - min(ADMISSION_MARGIN_S, ADMISSION_MARGIN_SHARE * window_s)",
        "    return 0.8 * window_s",
        (
            f"{UNIT_ADMISSION}::test_a_service_time_near_the_window_still_leaves_room_for_a_short_wait",
            f"{SCALING_POLICY}::test_admission_keeps_seconds_of_the_window_free_not_a_share_of_it",
        ),
    ),
    Mutation(
        "admission: a whole second kept free of every window (a 1 s route refuses all)",
        "service/admission.py",
        "    return window_s - min(ADMISSION_MARGIN_S, ADMISSION_MARGIN_SHARE * window_s)",
        "    return window_s - ADMISSION_MARGIN_S",
        (f"{UNIT_ADMISSION}::test_a_short_window_keeps_a_share_of_it_as_margin",),
    ),
    Mutation(
        "admission: probes with no worker reporting",
        "service/admission.py",
        "            self.estimate.live_workers == 0\n            or ",
        "            ",
        (
            f"{UNIT_ADMISSION}::test_no_probe_when_the_queue_itself_is_too_long_or_no_worker_reports",
            f"{OVERLOAD}::test_no_worker_draining_means_503_not_a_wait_for_504",
        ),
    ),
    Mutation(
        "drain: a read without a new report measures a rate of zero",
        "queuefront/drain.py",
        "            if elapsed <= 0:  # not reported again since the last read: nothing new\n"
        "                seen[worker] = before\n"
        "                continue\n",
        "            elapsed = max(elapsed, 1e-9)\n",
        (f"{UNIT_ADMISSION}::test_the_rate_is_a_workers_own_measurement_however_often_the_pod_reads",),
    ),
    # --- clocks (issue 16, §5) ----------------------------------------------------------
    Mutation(
        "clock: a worker judges deadlines on its own wall clock",
        "queuefront/envelope.py",
        "        return self.deadline - (clock.now() if now is None else now)",
        '        return self.deadline - (__import__("time").time() if now is None else now)',
        (f"{CLOCKS}[worker-30s-ahead]",),
    ),
    Mutation(
        "clock: the api writes deadlines on its own wall clock",
        "service/proxy.py",
        "    now = clock.now()  # read by a worker on another host",
        '    now = __import__("time").time()  # read by a worker on another host',
        (f"{CLOCKS}[api-10s-behind]",),
    ),
    Mutation(
        "clock: drain reports stamped with the worker's wall clock",
        "queuefront/drain.py",
        "            CLOCK.now(), self._slots, self._completed",
        '            __import__("time").time(), self._slots, self._completed',
        (f"{CLOCKS}[worker-10s-behind]",),
    ),
    Mutation(
        "drain: the workers' slots counted past the backend limit they share",
        "queuefront/drain.py",
        "    return unlimited + min(limited, limit)",
        "    return unlimited + limited",
        ("tests/unit/test_drain_slots.py::test_slots_count_within_the_limit_the_workers_share",),
    ),
    Mutation(
        "clock: pods judge drain reports on their own wall clock",
        "service/admission.py",
        "self.estimate.update(reports, clock.now(), time.monotonic())",
        "self.estimate.update(reports, time.time(), time.monotonic())",
        (f"{CLOCKS}[api-30s-ahead]",),
    ),
    Mutation(
        "clock: cache expiry written on the worker's wall clock",
        "queuefront/cache.py",
        "        expires_at = clock.now() + spec.ttl_s",
        '        expires_at = __import__("time").time() + spec.ttl_s',
        (f"{CLOCKS}[worker-10s-behind]", f"{CLOCKS}[worker-30s-ahead]"),
    ),
    Mutation(
        "clock: a pod judges its own tier's expiry on its wall clock",
        "service/hotcache.py",
        '        one flight that fetches it."""\n        now = clock.now()',
        '        one flight that fetches it."""\n        now = __import__("time").time()',
        (f"{CLOCKS}[api-10s-behind]",),
    ),
    Mutation(
        "clock: a pod judges Redis's cache entries on its wall clock",
        "service/hotcache.py",
        "            now = clock.now()  # the worker wrote the entry's expiry on the same clock",
        '            now = __import__("time").time()',
        (f"{CLOCKS}[api-30s-ahead]",),
    ),
    Mutation(
        "clock: the api stamps received_at on its own wall clock",
        "service/ingest.py",
        "            received_at=clock.now(),",
        '            received_at=__import__("time").time(),',
        (f"{INGEST_LAG}[api-10s-behind]",),
    ),
    Mutation(
        "clock: the writer measures ingest lag on its own wall clock",
        "workers/writer/observe.py",
        "    committed_at = clock.now()",
        '    committed_at = __import__("time").time()',
        (f"{INGEST_LAG}[writer-30s-ahead]",),
    ),
    Mutation(
        "clock: the latest Redis TIME sample wins, however long its round trip",
        "queuefront/clock.py",
        "        self._base_s = min(self._samples, key=lambda s: s.rtt_s).base_s",
        "        self._base_s = self._samples[-1].base_s",
        (f"{UNIT_CLOCK}::test_the_sample_with_the_shortest_round_trip_wins",),
    ),
    Mutation(
        "clock: the server's reading taken as of the answer, not the round trip's middle",
        "queuefront/clock.py",
        "Sample(server_s - (sent_s + received_s) / 2, received_s - sent_s)",
        "Sample(server_s - received_s, received_s - sent_s)",
        (f"{UNIT_CLOCK}::test_a_reading_counts_as_of_the_middle_of_its_round_trip",),
    ),
    Mutation(
        "alerts: the clock offset alert misses clocks behind",
        "deploy/prometheus/alerts.yml",
        "(abs(queuefront_clock_offset_seconds))",
        "(queuefront_clock_offset_seconds)",
        (f"{PROMETHEUS}::test_promtool_accepts[test-rules]",),
    ),
    # --- the scaling simulator (bench/scaling, issue 18) --------------------------------
    Mutation(
        "scaling: target tracking scales out on one datapoint",
        "bench/scaling/aws.py",
        "target_tracking_high_datapoints: int = 3",
        "target_tracking_high_datapoints: int = 1",
        (f"{SCALING_ALARMS}::test_target_tracking_scales_out_after_three_datapoints_in_a_row",),
    ),
    Mutation(
        "scaling: target tracking scales in after three datapoints",
        "bench/scaling/aws.py",
        "target_tracking_low_datapoints: int = 15",
        "target_tracking_low_datapoints: int = 3",
        (f"{SCALING_ALARMS}::{SCALE_IN_TEST}",),
    ),
    Mutation(
        "scaling: the scale-in alarm at the target, not at 90 % of it",
        "bench/scaling/aws.py",
        "target_tracking_low_ratio: float = 0.9",
        "target_tracking_low_ratio: float = 1.0",
        (f"{SCALING_ALARMS}::{SCALE_IN_TEST}",),
    ),
    Mutation(
        "scaling: the scale-out cooldown forgets the capacity it started from",
        "bench/scaling/autoscaling.py",
        "base = self.out_base if now < self.out_until else svc.desired\n"
        "            want = self.want(",
        "base = svc.desired\n            want = self.want(",
        (f"{SCALING_ALARMS}::test_scale_out_cooldown_only_lets_a_larger_scale_out_through",),
    ),
    Mutation(
        "scaling: a scale-out leaves the scale-in cooldown running",
        "bench/scaling/autoscaling.py",
        "p.in_until = -math.inf",
        "pass",
        (f"{SCALING_ALARMS}::{SCALE_IN_COOLDOWN_TEST}",),
    ),
    Mutation(
        "scaling: alarms never look back past evaluation_periods",
        "bench/scaling/cloudwatch.py",
        "span = range(last, last - self.n - EXTRA_RANGE_PERIODS, -1)",
        "span = range(last, last - self.n, -1)",
        (
            f"{SCALING_ALARMS}::test_the_evaluation_range_uses_late_datapoints_once_they_are_published",
            f"{SCALING_SIM}::test_the_writer_starts_from_zero_when_votes_wait",
        ),
    ),
    Mutation(
        "scaling: workers call the backend for expired messages",
        "bench/scaling/workers.py",
        "if cohort.expired or t >= cohort.deadline:",
        "if False:",
        (f"{SCALING_SIM}::test_workers_delete_expired_messages_without_calling_the_backend",),
    ),
    Mutation(
        "scaling: workers take normal messages before high ones",
        "bench/scaling/workers.py",
        'PRIORITIES: tuple[Priority, ...] = ("high", "normal")',
        'PRIORITIES: tuple[Priority, ...] = ("normal", "high")',
        (f"{SCALING_SIM}::test_under_overload_normal_requests_are_shed_before_high_ones",),
    ),
    Mutation(
        "scaling: cached misses always on the normal queue",
        "bench/scaling/sim.py",
        "            priority = self.cached_miss_priority",
        '            priority = "normal"',
        (f"{SCALING_POLICY}::test_every_shipped_scenario_holds_its_criteria[backend-brownout]",),
    ),
    Mutation(
        "scaling: the route table's cached routes not read for the misses' queue",
        "bench/scaling/scenario.py",
        '    return "high" if cached.count("high") > cached.count("normal") else "normal"',
        '    return "high"',
        (f"{SCALING_SIM}::test_cached_misses_wait_where_the_route_table_puts_cached_routes",),
    ),
    Mutation(
        "scaling: the workers' shared backend limit not applied",
        "bench/scaling/workers.py",
        "        return min(own, self.shared_limit) if self.shared_limit > 0 else own",
        "        return own",
        (f"{SCALING_POLICY}::test_every_shipped_scenario_holds_its_criteria[backend-brownout]",),
    ),
    Mutation(
        "scaling: admission ignores the backlog ahead",
        "bench/scaling/admission.py",
        "return max(0.0, math.floor(allowed * rate - ahead) + 1)",
        "return max(0.0, math.floor(allowed * rate) + 1)",
        (f"{SCALING_SIM}::{STEP_TEST}",),
    ),
    Mutation(
        "scaling: a timed-out cohort's requests go uncounted",
        "bench/scaling/sim.py",
        "self.ledger.time_out(cohort.cls, cohort.open)",
        "pass",
        (f"{SCALING_SIM}::test_every_shipped_scenario_accounts_for_every_request_and_loses_none",),
    ),
    Mutation(
        "scaling: the tfvars file is not read",
        "bench/scaling/terraform.py",
        "values: dict[str, Value] = dict(_tfvars(tfvars)) if tfvars is not None else {}",
        "values: dict[str, Value] = {}",
        (
            f"{SCALING_TF}::test_the_policy_is_the_tfvars_through_the_module_wiring",
            f"{SCALING_SIM}::test_the_tfvars_drive_the_result",
        ),
    ),
    Mutation(
        "scaling: --set is ignored",
        "bench/scaling/terraform.py",
        "values[path[0]] = value",
        "pass",
        (f"{SCALING_TF}::test_set_overrides_one_value_and_reaches_every_use",),
    ),
    Mutation(
        "scaling: an undeclared variable is not reported",
        "bench/scaling/terraform.py",
        "        if decl is None:\n            raise TerraformError(",
        "        if decl is None:\n            return None\n            raise TerraformError(",
        (f"{SCALING_TF}::test_a_renamed_variable_fails_naming_it",),
    ),
    # --- the pods' scaling signal and the policy on it (issue 18 §3) -------------------------
    Mutation(
        "signal: standard resolution (one-minute metrics)",
        "service/scaling_signal.py",
        "STORAGE_RESOLUTION_S = 1\n",
        "STORAGE_RESOLUTION_S = 60\n",
        (f"{SIGNAL_UNIT}::test_a_line_is_an_emf_document_of_high_resolution_metrics",),
    ),
    Mutation(
        "signal: a metric declared without its value",
        "service/scaling_signal.py",
        "            continue  # a declared metric must be present: leave unknown ones out",
        "            value = float('nan')",
        (f"{SIGNAL_UNIT}::test_what_is_not_known_is_left_out_not_written_as_a_number",),
    ),
    Mutation(
        "signal: the backlog of the high queue only",
        "service/scaling_signal.py",
        "backlog=int(sum(monitor.backlog.values())),",
        'backlog=int(monitor.backlog["high"]),',
        (
            f"{SIGNAL_UNIT}::test_the_values_are_the_monitors",
            f"{SIGNAL_INTEGRATION}::test_the_api_writes_the_workers_drain_and_the_queues_backlog",
        ),
    ),
    Mutation(
        "signal: written while the backlog cannot be read",
        "service/scaling_signal.py",
        "        if not self._monitor.healthy:\n            return None\n",
        "",
        (f"{SIGNAL_UNIT}::test_nothing_is_written_while_the_backlog_cannot_be_read",),
    ),
    Mutation(
        "signal: refusals as a running total",
        "service/scaling_signal.py",
        "refused, self._refused = refused_now - self._refused, refused_now",
        "refused = refused_now",
        (f"{SIGNAL_UNIT}::test_refusals_are_the_count_since_the_last_line",),
    ),
    Mutation(
        "signal: the api never starts it",
        "service/app.py",
        "    await signal.start()\n",
        "",
        (f"{SIGNAL_INTEGRATION}::test_the_api_writes_the_workers_drain_and_the_queues_backlog",),
    ),
    Mutation(
        "scaling: a scale-out step scales in within its cooldown",
        "bench/scaling/autoscaling.py",
        "        elif (\n            want < base\n            and want < svc.desired",
        "        if (\n            want < svc.desired",
        (f"{SCALING_POLICY}::test_a_scale_out_step_never_scales_in_within_its_cooldown",),
    ),
    Mutation(
        "scaling: a bucket passes at most its burst per step",
        "bench/scaling/gateway.py",
        "self._available = self.tokens + self.rate * dt",
        "self._available = min(self.burst, self.tokens + self.rate * dt)",
        (f"{SCALING_POLICY}::test_a_bucket_whose_rate_exceeds_its_burst_passes_its_rate",),
    ),
    Mutation(
        "scaling: scheduled actions never run",
        "bench/scaling/sim.py",
        "        while self.scheduled and self.scheduled[0][0] <= now:",
        "        while False:",
        (
            f"{SCALING_POLICY}::"
            "test_an_event_raises_the_floor_at_its_start_and_restores_it_at_its_end",
        ),
    ),
    Mutation(
        "scaling: the pods write their signal every step",
        "bench/scaling/sim.py",
        "self._signal_written = self.signal_interval_s > 0 and t + dt > self._signal_due",
        "self._signal_written = self.signal_interval_s > 0",
        (
            f"{SCALING_POLICY}::test_the_fast_signal_is_written_every_interval_and_read_as_published",
        ),
    ),
    Mutation(
        "scaling: the signal read as if published at once",
        "bench/scaling/cloudwatch.py",
        "return a.emf_log_publication_delay_s",
        "return (0.0, 0.0)",
        (
            f"{SCALING_POLICY}::test_the_pods_signal_decides_within_seconds_of_a_step",
            f"{SCALING_POLICY}::test_the_pods_signal_reaches_the_alarms_after_the_log_drivers_batch",
        ),
    ),
    Mutation(
        "scaling: listen backlogs full before the CPU serves the step",
        "bench/scaling/sim.py",
        "        self._serve_api(t)\n        self._trim_backlogs(t)",
        "        self._trim_backlogs(t)\n        self._serve_api(t)",
        (f"{SCALING_POLICY}::test_a_pod_serves_more_a_second_than_its_listen_backlog_holds",),
    ),
    Mutation(
        "scaling: an event above a service's maximum is run",
        "bench/scaling/terraform.py",
        "if spec.min_tasks is not None and spec.min_tasks > top:",
        "if False:",
        (f"{SCALING_POLICY}::test_an_event_above_a_services_maximum_is_refused_not_run",),
    ),
    # --- the simulator on the merged edge (REST API, WAF, NLB, ingest_direct) --------------
    Mutation(
        "scaling: Terraform's preconditions not checked (a refused plan simulated)",
        "bench/scaling/terraform.py",
        "                    if ok is not True:",
        "                    if False:",
        (f"{SCALING_TF}::test_a_plan_terraform_refuses_is_not_simulated",),
    ),
    Mutation(
        "scaling: a method's throttle rate read from its burst",
        "bench/scaling/tfedge.py",
        'rate=self.edge.number(settings["throttling_rate_limit"], where, **extra),',
        'rate=self.edge.number(settings["throttling_burst_limit"], where, **extra),',
        (f"{SCALING_TF}::test_the_rest_apis_throttles_are_its_method_settings",),
    ),
    Mutation(
        "scaling: ingest_direct's votes still go through the pods",
        "bench/scaling/sim.py",
        "        if self.ingest_direct:\n            self._send_direct(",
        "        if False:\n            self._send_direct(",
        (f"{SCALING_SIM}::test_direct_votes_skip_the_pods",),
    ),
    Mutation(
        "scaling: API Gateway's integration timeout not read from the Terraform",
        "bench/scaling/sim.py",
        "            edge.integration_timeout_s\n            if model.api_gateway",
        "            aws.api_gateway_timeout_s\n            if model.api_gateway",
        (f"{SCALING_SIM}::test_api_gateway_cuts_a_request_at_its_integration_timeout",),
    ),
    Mutation(
        "scaling: the REST API priced as an HTTP API",
        "bench/scaling/report.py",
        "tiers = aws.api_gateway_rest_tiers if rest else aws.api_gateway_http_tiers",
        "tiers = aws.api_gateway_http_tiers",
        (f"{SCALING_SIM}::test_the_edge_is_priced_as_the_terraform_builds_it",),
    ),
    Mutation(
        "scaling: the stage's WAF inspects only what passed the throttles",
        "bench/scaling/report.py",
        '"api_gateway": sim.gateway_offered,',
        '"api_gateway": gateway,',
        (f"{SCALING_SIM}::test_the_edge_is_priced_as_the_terraform_builds_it",),
    ),
    Mutation(
        "scaling: the capacity model prices API Gateway flat at its first tier",
        "bench/scaling/capacity.py",
        '"api_gateway": tiered(gateway * SECONDS_PER_MONTH, tiers),',
        '"api_gateway": gateway * SECONDS_PER_MONTH * 3.5e-6,',
        (
            "tests/unit/test_scaling_capacity.py::"
            "test_the_edge_is_priced_at_its_tiers_with_both_web_acls_and_the_nlb",
        ),
    ),
    Mutation(
        "scaling: the capacity model ignores ingest_direct",
        "bench/scaling/capacity.py",
        "direct = ingest if spec is not None and spec.direct_routes else 0.0",
        "direct = 0.0",
        (
            "tests/unit/test_scaling_capacity.py::"
            "test_the_edge_is_priced_at_its_tiers_with_both_web_acls_and_the_nlb",
        ),
    ),
    # --- product changes the simulator shows behind flags (brownout analysis) ------------
    Mutation(
        "scaling: a late-refusing worker ignores the calls in flight (sees a slowdown late)",
        "bench/scaling/workers.py",
        "        for _, _, _, n, taken in self._in_service:\n",
        "        for _, _, _, n, taken in ():\n",
        (
            f"{SCALING_POLICY}::"
            "test_a_slowdown_shows_in_the_calls_in_flight_before_the_first_slow_one_ends",
        ),
    ),
    Mutation(
        "scaling: worker_refuses_late does nothing",
        "bench/scaling/workers.py",
        "        if not self.refuse_late or self._last_end is None:",
        "        if True:",
        (f"{SCALING_POLICY}::test_a_worker_that_refuses_late_messages_turns_504s_into_fast_503s",),
    ),
    Mutation(
        "scaling: cold simulated workers refuse on the calls in flight",
        "bench/scaling/workers.py",
        "        if not self.refuse_late or self._last_end is None:",
        "        if not self.refuse_late:",
        (f"{SCALING_POLICY}::test_cold_workers_never_refuse",),
    ),
    Mutation(
        "scaling: the simulated workers ignore QF_WORKER_REFUSE_LATE",
        "bench/scaling/sim.py",
        'bool(worker_spec.settings["worker_refuse_late"])',
        "False",
        (
            f"{SCALING_POLICY}::test_the_simulated_workers_refuse_late_as_the_product_is_set",
            f"{SCALING_POLICY}::test_a_worker_that_refuses_late_messages_turns_504s_into_fast_503s",
        ),
    ),
    Mutation(
        "scaling: admission_margin_s does nothing",
        "bench/scaling/admission.py",
        "        if self.margin_s is None:\n",
        "        if True:\n",
        (f"{SCALING_POLICY}::test_admission_keeps_seconds_of_the_window_free_not_a_share_of_it",),
    ),
    Mutation(
        "scaling: the simulated admission keeps a fifth of the window, not the product's margin",
        "bench/scaling/admission.py",
        "            return usable_s(window_s)\n",
        "            return 0.8 * window_s\n",
        (f"{SCALING_POLICY}::test_admission_keeps_seconds_of_the_window_free_not_a_share_of_it",),
    ),
    Mutation(
        "scaling: the simulated workers judge on the median of the calls, not the 90th percentile",
        "bench/scaling/workers.py",
        "                share=REFUSE_SHARE,\n",
        "                share=0.5,\n",
        (f"{SCALING_POLICY}::test_the_simulated_workers_refuse_what_the_slower_calls_would_outlast",),
    ),
    Mutation(
        "scaling: the simulator's shortcut calls a message the estimate would refuse",
        "bench/scaling/workers.py",
        "        return max(self._remembered_max, ended, oldest * self._stretch)",
        "        return max(self._remembered_max, ended)",
        (
            f"{SCALING_POLICY}::"
            "test_a_slowdown_shows_in_the_calls_in_flight_before_the_first_slow_one_ends",
        ),
    ),
    Mutation(
        "scaling: calls started one at a time all take one service time of the spread",
        "bench/scaling/workers.py",
        "            self._next_group = first + k\n",
        "            self._next_group = first\n",
        (f"{SCALING_POLICY}::test_calls_started_one_at_a_time_take_every_service_time_of_the_spread",),
    ),
    Mutation(
        "scaling: goodput not checked",
        "bench/scaling/criteria.py",
        "            worst is None or worst[0] >= GOODPUT_SHARE,",
        "            True,",
        (f"{SCALING_POLICY}::test_the_brownout_needs_the_workers_to_share_the_backends_bound",),
    ),
    # --- the simulator calibrated against make sla (issue 18 §2) --------------------------
    Mutation(
        "calibration: the worker's slots typed in, not the SLA benchmark's",
        "bench/scaling/machine.py",
        'new_stack_env({"QF_WORKER_CONCURRENCY": str(args.worker_concurrency)})',
        'new_stack_env({"QF_WORKER_CONCURRENCY": "40"})',
        (f"{CALIBRATION}::test_a_changed_benchmark_setting_changes_the_machine",),
    ),
    Mutation(
        "calibration: the demo backend without its collapse",
        "bench/scaling/machine.py",
        "        collapse=True,\n",
        "        collapse=False,\n",
        (f"{CALIBRATION}::test_the_machine_is_the_sla_benchmarks",),
    ),
    Mutation(
        "calibration: agreement on goodput alone",
        "bench/scaling/calibrate.py",
        "for r in (self.goodput_ratio(), self.shed_ratio())",
        "for r in (self.goodput_ratio(),)",
        (f"{CALIBRATION}::test_a_summary_json_compares_level_by_level",),
    ),
]


@dataclass(frozen=True)
class Outcome:
    failed: tuple[str, ...]
    """The guarding tests that failed (or errored)."""
    seconds: float
    problem: str = ""
    """Not a verdict: the run timed out, or pytest could not run the tests."""


_SUMMARY = re.compile(r"^(?:FAILED|ERROR) (.+)$", re.MULTILINE)


def snapshot(dest: Path) -> Path:
    """The work tree without caches, venvs and git; the emulator's packages linked. Taken
    once: every run copies it, so edits made to the work tree meanwhile change nothing."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "node_modules", ".terraform*", "__pycache__", ".*_cache", "*.egg-info"
    )
    shutil.copytree(REPO, dest, ignore=ignore)
    modules = REPO / SQS_MODULES
    if modules.exists():
        (dest / SQS_MODULES).symlink_to(modules, target_is_directory=True)
    return dest


def copy_tree(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)
    return dest


def run_tests(tree: Path, tests: tuple[str, ...], log: Path) -> Outcome:
    """Runs ``tests`` in ``tree`` (one pytest session, one test at a time)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")])),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    args = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            args, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code = proc.wait(PYTEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # pytest and the processes it started
            proc.wait()
            code = -1
    seconds = time.monotonic() - started
    summary = _SUMMARY.findall(log.read_text(errors="replace"))
    # a parametrized test fails as one or more of its cases: "<id>[<case>] - <message>"
    failed = tuple(
        t for t in tests if any(re.match(re.escape(t) + r"(\[| |$)", s) for s in summary)
    )
    if code == -1:
        return Outcome(failed, seconds, f"TIMEOUT after {PYTEST_TIMEOUT_S} s")
    if code not in (0, 1) or (code == 1) != bool(failed):
        return Outcome(failed, seconds, f"pytest exited {code}")
    return Outcome(failed, seconds)


def short(node_id: str) -> str:
    path, _, test = node_id.partition("::")
    return f"{Path(path).name}::{test}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def print_table(rows: list[tuple[str, str, str]]) -> None:
    header = ("mutation", "tests that failed", "seconds")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")


def run_all(snapshot: Path, chosen: list[Mutation], log_dir: Path, *, baseline: bool) -> int:
    if baseline:
        guarding = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
            tree = copy_tree(snapshot, Path(scratch) / "repo")
            base = run_tests(tree, guarding, log_dir / "baseline.log")
        if base.failed or base.problem:
            print(f"baseline: {base.problem or 'failed'}: " + ", ".join(map(short, base.failed)))
            return 2
        print(f"baseline: the {len(guarding)} guarding tests pass ({base.seconds:.0f} s)")

    rows: list[tuple[str, str, str]] = []
    holes = 0
    for m in chosen:
        with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
            tree = copy_tree(snapshot, Path(scratch) / "repo")
            m.apply(tree)
            outcome = run_tests(tree, m.tests, log_dir / f"{slug(m.name)}.log")
        verdict = ", ".join(short(t) for t in outcome.failed) or "NOT CAUGHT"
        if outcome.problem:
            verdict = f"{outcome.problem}: {verdict}"
        holes += bool(outcome.problem) or not outcome.failed
        rows.append((m.name, verdict, f"{outcome.seconds:.0f}"))
        print(f"{m.name}: {verdict} ({outcome.seconds:.0f} s)", flush=True)
    print()
    print_table(rows)
    print(f"\n{len(rows) - holes} of {len(rows)} mutations caught")
    return 1 if holes else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("names", nargs="*", help="substrings of mutation names (default: all)")
    parser.add_argument(
        "-k", dest="tests", action="append", default=[], help="substring of a guarding test id"
    )
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--log-dir", type=Path, help="pytest output per run (default: a temp dir)")
    args = parser.parse_args()
    chosen = [
        m
        for m in MUTATIONS
        if (not args.names or any(n in m.name for n in args.names))
        and (not args.tests or any(k in t for k in args.tests for t in m.tests))
    ]
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.file}; " + ", ".join(short(t) for t in m.tests))
        return 0
    if not chosen:
        print("no mutation matches", file=sys.stderr)
        return 2
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="mutations-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"pytest output: {log_dir}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mutations-") as scratch:
        tree = snapshot(Path(scratch) / "snapshot")
        for m in chosen:  # every edit applies, before any test runs
            count = m.occurrences(tree)
            if count != 1:
                print(f"{m.name}: the text occurs {count} times in {m.file}", file=sys.stderr)
                return 2
        return run_all(tree, chosen, log_dir, baseline=not args.no_baseline)


if __name__ == "__main__":
    sys.exit(main())
