"""bench.closedloop: reading wrk's report, and the requests its scripts make."""

from __future__ import annotations

import pytest

from bench.closedloop import WrkResult, local, parse_wrk, path_script, run, votes_script

REPORT = """Running 1s test @ http://127.0.0.1:18937
  1 threads and 2 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.35ms    1.84ms  15.21ms   88.42%
    Req/Sec     2.23k   810.73     3.20k    60.00%
  Latency Distribution
     50%  505.00us
     75%    1.74ms
     90%    3.40ms
     99%    1.20s
  2230 requests in 1.00s, 1.11MB read
  Socket errors: connect 0, read 2, write 0, timeout 5
  Non-2xx or 3xx responses: 230
Requests/sec:   2227.71
Transfer/sec:      1.10MB
"""


def test_a_wrk_report_is_read() -> None:
    result = parse_wrk(REPORT)
    assert result == WrkResult(
        requests=2230, rps=2227.71, p50_ms=0.505, p99_ms=1200.0, non_2xx=230, socket_errors=7
    )
    assert result.ok == 2000
    assert result.ok_per_s == pytest.approx(2227.71 * 2000 / 2230)


def test_a_clean_report_has_no_errors() -> None:
    clean = "\n".join(
        line for line in REPORT.splitlines() if not line.strip().startswith(("Socket", "Non-2xx"))
    )
    result = parse_wrk(clean)
    assert (result.non_2xx, result.socket_errors, result.ok) == (0, 0, 2230)


def test_what_is_not_a_report_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_no_answers_is_no_throughput() -> None:
    assert WrkResult(0, 0.0, 0.0, 0.0, 0, 3).ok_per_s == 0.0


def test_scripts_number_their_requests() -> None:
    items = path_script("/api/items/capacity-{i}?x=1")
    assert '"/api/items/capacity-" .. n .. "?x=1"' in items
    assert "n = n + 1" in items
    votes = votes_script("/api/polls/p7/votes")
    assert 'wrk.method = "POST"' in votes
    assert '"/api/polls/p7/votes"' in votes
    assert """'{"choice":%d,"voter":"viewer-%d"}', n % 5, n""" in votes


def test_only_this_machine() -> None:
    assert local("http://127.0.0.1:8080") and local("http://localhost:1")
    assert local("http://172.18.0.3:8080")  # a container of bench.compose's own stack
    assert not local("http://example.com") and not local("http://8.8.8.8")
    with pytest.raises(AssertionError, match="this machine"):
        run("http://example.com", seconds=1, connections=1)
