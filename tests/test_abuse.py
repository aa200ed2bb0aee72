"""Abuse tests (issue 11): the default server, ``python -m framework serve`` (granian), against
hostile peers, one attack class per test, each against a fresh server process.

During each attack (a few seconds; the attackers are in tests/h2_attackers.py) a well-behaved
client in its own process, on its own h2c connection opened before the attack, sends one
prepared invocation of ``Abuse/echo`` (tests/abuse_app.py) every 200 ms and checks every
answer. Acceptance, per attack:

- the client: at least 95 % of its calls answered right (within 5 s each), and the p99 latency
  of the answered calls under 2 s;
- the server's process tree (granian's supervisor and its worker process): alive and serving
  afterwards (same processes, and a call on a new connection answered); RSS under +200 MB of
  its idle value during the attack (sampled until it has recovered) and back within +50 MB of
  it afterwards; open fds back to the idle count once the attacker has gone (both waited for,
  at most 15 s).

Each test prints what it measured (``pytest -s`` shows it): attacker frames, the server's
reaction (GOAWAY codes, RST_STREAM codes, statuses, closed connections), the client's
p50/p99/success, RSS before/peak/after and fds before/after. With
``FRAMEWORK_ABUSE_REPORT=path`` each test also appends them there as one JSON line.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from framework._dev.service_process import ServiceProcess
from tests.h2_attackers import (
    CONTENT_TYPE,
    INVOKE_PATH,
    Attack,
    AttackResult,
    Probe,
    ProbeResult,
    Sampler,
    Target,
    Usage,
    check_answer,
    continuation_flood,
    garbage_preface,
    hpack_bomb,
    huge_body,
    invocation_journal,
    many_streams,
    ping_flood_without_reading,
    rapid_reset,
    settings_flood,
    slowloris,
    usage,
)
from tests.processes import process_tree

ServiceFactory = Callable[..., ServiceProcess]

APP = "tests.abuse_app:application"
ATTACK_SECONDS = 4.0
MIN_ANSWERED = 0.95
MAX_P99_SECONDS = 2.0
MAX_RSS_GROWTH_MB = 200.0
# What an attack may leave behind once it is over. A quarter of the in-attack budget: an
# allocator may keep some freed memory, but a server keeping more than this per attack
# reaches the whole budget after four of them.
MAX_RSS_LEFT_MB = 50.0
RECOVERY_TIMEOUT = 15.0
# Far past the budget (the test fails anyway): the attack is stopped there so that a server
# that really breaks cannot take this machine's memory with it.
ABORT_GROWTH_MB = 1000.0


@dataclass
class Measured:
    """One attack against one server: what was sent, seen and used."""

    attack: AttackResult
    client: ProbeResult
    before: Usage
    peak_mb: float
    after: Usage
    serving: str | None  # None when alive and serving afterwards, else what is wrong
    aborted: bool

    def failures(self) -> list[str]:
        problems = []
        if self.client.success < MIN_ANSWERED:
            problems.append(
                f"the client got {self.client.answered}/{self.client.calls} calls answered "
                f"({self.client.success:.0%} < {MIN_ANSWERED:.0%}): {self.client.errors}"
            )
        p99 = self.client.percentile(0.99)
        if p99 >= MAX_P99_SECONDS:
            problems.append(f"the client's p99 was {p99:.2f} s (>= {MAX_P99_SECONDS:.0f} s)")
        if self.serving is not None:
            problems.append(f"the server is not serving afterwards: {self.serving}")
        growth = self.peak_mb - self.before.rss_mb
        if growth >= MAX_RSS_GROWTH_MB:
            stopped = f" (attack stopped at +{ABORT_GROWTH_MB:.0f} MB)" if self.aborted else ""
            problems.append(f"RSS grew by {growth:.0f} MB during the attack{stopped}")
        left = self.after.rss_mb - self.before.rss_mb
        if left > MAX_RSS_LEFT_MB:
            problems.append(
                f"RSS stayed {left:.0f} MB above its idle value {RECOVERY_TIMEOUT:.0f} s after"
            )
        if self.after.fds > self.before.fds:
            problems.append(
                f"open fds {self.before.fds} -> {self.after.fds}, "
                f"{RECOVERY_TIMEOUT:.0f} s after the attacker left"
            )
        return problems

    def report(self) -> str:
        attack, client = self.attack, self.client
        p50, p99 = client.percentile(0.5), client.percentile(0.99)
        failures = self.failures()
        lines = [
            f"== {attack.name} ==",
            f"attacker: {attack.frames_sent:,} {attack.unit} on {attack.connections} "
            f"connection(s), {attack.bytes_sent / 1e6:.1f} MB",
            f"server:   {attack.reaction_summary()}",
            f"client:   {client.answered}/{client.calls} answered ({client.success:.1%}), "
            f"p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms",
            f"RSS MB:   before {self.before.rss_mb:.1f}, peak {self.peak_mb:.1f} "
            f"(+{self.peak_mb - self.before.rss_mb:.1f}), after {self.after.rss_mb:.1f} "
            f"(+{self.after.rss_mb - self.before.rss_mb:.1f})"
            + ("; attack stopped by the safety valve" if self.aborted else ""),
            f"fds:      before {self.before.fds}, after {self.after.fds} "
            f"(processes {len(self.before.pids)})",
        ]
        lines += [f"note:     {note}" for note in attack.notes[:8]]
        lines.append("verdict:  " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
        return "\n".join(lines)

    def as_json(self) -> str:
        client = self.client
        return json.dumps(
            {
                "attack": self.attack.name,
                "frames_sent": self.attack.frames_sent,
                "unit": self.attack.unit,
                "connections": self.attack.connections,
                "bytes_sent": self.attack.bytes_sent,
                "server_reaction": self.attack.reaction_summary(),
                "notes": self.attack.notes,
                "client_calls": client.calls,
                "client_answered": client.answered,
                "client_p50_ms": round(client.percentile(0.5) * 1e3, 1),
                "client_p99_ms": round(client.percentile(0.99) * 1e3, 1),
                "client_errors": client.errors,
                "rss_before_mb": round(self.before.rss_mb, 1),
                "rss_peak_mb": round(self.peak_mb, 1),
                "rss_after_mb": round(self.after.rss_mb, 1),
                "fds_before": self.before.fds,
                "fds_after": self.after.fds,
                "serving_afterwards": self.serving or "yes",
                "aborted": self.aborted,
                "failures": self.failures(),
            }
        )


def _call(client: httpx.Client, n: int) -> str | None:
    """One invocation on ``client``; None when answered right, else what went wrong."""
    headers = {"content-type": CONTENT_TYPE, "accept": CONTENT_TYPE}
    try:
        response = client.post(INVOKE_PATH, content=invocation_journal(n), headers=headers)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    return check_answer(response.content, n)


def _h2_client(target: Target) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://{target.authority}",
        http1=False,
        http2=True,
        timeout=5.0,
        trust_env=False,
    )


def _warm_up(target: Target) -> None:
    """A few calls on a connection closed afterwards: what a first request allocates is in
    the idle values, not in the attack's."""
    with _h2_client(target) as client:
        for n in range(5):
            problem = _call(client, 1000 + n)
            assert problem is None, f"the server does not answer before the attack: {problem}"


def _settled(pid: int, timeout: float = 5.0) -> Usage:
    """The tree's usage once its fd count has held still for half a second."""
    deadline = time.monotonic() + timeout
    current = usage(pid)
    steady = 0
    while steady < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
        latest = usage(pid)
        steady = steady + 1 if latest.fds == current.fds else 0
        current = latest
    return current


def _recovered(pid: int, before: Usage) -> Usage:
    """The tree's usage once fds and RSS are back (or after RECOVERY_TIMEOUT)."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        current = usage(pid)
        back = current.fds <= before.fds and current.rss_mb <= before.rss_mb + MAX_RSS_LEFT_MB
        if back or time.monotonic() >= deadline:
            return current
        time.sleep(0.2)


def _serving(service: ServiceProcess, pids_before: list[int]) -> str | None:
    """None when the same processes still run and a new connection gets a call answered."""
    if not service.running():
        return f"the server process exited; its log ends with:\n{service.log_tail(30)}"
    assert service.pid is not None
    pids_now = process_tree(service.pid)
    if sorted(pids_now) != sorted(pids_before):
        return f"its processes changed (a worker died?): {pids_before} -> {pids_now}"
    with _h2_client(Target("127.0.0.1", service.port)) as client:
        problem = _call(client, 4242)
    return None if problem is None else f"a call on a new connection failed: {problem}"


def measure(service: ServiceProcess, attack: Attack) -> Measured:
    """Warm up, take the idle values, run ``attack`` while the client calls, then wait for
    the server to recover and check that it serves."""
    assert service.pid is not None
    pid = service.pid
    target = Target("127.0.0.1", service.port)
    _warm_up(target)
    before = _settled(pid)
    pids_before = process_tree(pid)
    probe = Probe(target)
    stop = threading.Event()
    probe.start()
    try:
        # Sampled until the server has recovered: what it allocates for the attack after the
        # attacker has gone (work still queued) counts too.
        with Sampler(pid, before.rss_mb, stop, ABORT_GROWTH_MB) as sampler:
            result = attack(target, ATTACK_SECONDS, stop)
            client = probe.finish()
            after = _recovered(pid, before)
    finally:
        probe.kill()
    return Measured(
        attack=result,
        client=client,
        before=before,
        peak_mb=max(sampler.peak(), before.rss_mb),
        after=after,
        serving=_serving(service, pids_before),
        aborted=sampler.aborted,
    )


def check(service_process: ServiceFactory, attack: Attack) -> None:
    """Serve the app afresh, attack it, print and keep the measurements, apply acceptance."""
    service = service_process(APP)
    measured = measure(service, attack)
    print("\n" + measured.report())
    report_path = os.environ.get("FRAMEWORK_ABUSE_REPORT")
    if report_path:
        with open(report_path, "a", encoding="utf-8") as report:
            report.write(measured.as_json() + "\n")
    failures = measured.failures()
    assert not failures, measured.report()


# Known gaps, kept as tests that run and report (README "Threat model"); each says why.
_MADE_YOU_RESET = pytest.mark.xfail(
    reason="granian queues every request hyper accepted for Python, unbounded: a peer that "
    "provokes resets and reconnects (CVE-2025-8671) floods it; needs a granian fix or a proxy",
    strict=False,
)
_JOURNAL_BUFFERED = pytest.mark.xfail(
    reason="a journal is buffered whole before the handler runs: max_message_size bounds one "
    "message, not a 200 MB journal of 1 MiB messages",
    strict=False,
)
_HEAP_KEPT = pytest.mark.xfail(
    reason="after ~5,000 held streams (large headers, or a zero window) the worker's Python "
    "heap often stays 60-90 MB up (the +50 MB bound), though the peak stays under +200 MB",
    strict=False,
)


def test_continuation_flood(service_process: ServiceFactory) -> None:
    check(service_process, continuation_flood)


@pytest.mark.parametrize(
    "zero_window",
    [pytest.param(True, marks=_HEAP_KEPT), False],
    ids=["zero-window", "no-end-stream"],
)
def test_many_open_streams(service_process: ServiceFactory, zero_window: bool) -> None:
    check(service_process, functools.partial(many_streams, zero_window=zero_window))


@pytest.mark.parametrize(
    "provoked",
    [False, pytest.param(True, marks=_MADE_YOU_RESET)],
    ids=["client-resets", "made-you-reset"],
)
def test_rapid_reset(service_process: ServiceFactory, provoked: bool) -> None:
    check(service_process, functools.partial(rapid_reset, provoked=provoked))


def test_settings_flood(service_process: ServiceFactory) -> None:
    check(service_process, settings_flood)


def test_ping_flood_without_reading(service_process: ServiceFactory) -> None:
    check(service_process, ping_flood_without_reading)


def test_slowloris(service_process: ServiceFactory) -> None:
    check(service_process, slowloris)


def test_garbage_instead_of_preface(service_process: ServiceFactory) -> None:
    check(service_process, garbage_preface)


@_HEAP_KEPT
def test_hpack_bomb(service_process: ServiceFactory) -> None:
    check(service_process, hpack_bomb)


@pytest.mark.parametrize(
    "small_messages",
    [False, pytest.param(True, marks=_JOURNAL_BUFFERED)],
    ids=["one-oversized-message", "many-small-messages"],
)
def test_huge_request_body(service_process: ServiceFactory, small_messages: bool) -> None:
    check(service_process, functools.partial(huge_body, small_messages=small_messages))
