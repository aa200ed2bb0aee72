"""Load, bounded: 1,000 invocations at once through the session's restate-server.

Each invocation of ``Load/mixed`` (``bench/load_handlers.py``) runs two durable steps, calls a
virtual object that reads and writes state and runs a step of its own, sleeps durably and
runs a third step. All 1,000 are sent at once (with idempotency keys), then attached to.
Checked: every answer, every counter key counting exactly 1..n, every step's side effect in
the ledger exactly once, and no invocation left unfinished. The service's peak memory is
recorded (``VmHWM``); ``bench/load.py`` runs this and more, against the official SDK too.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from bench._common import Ingress, Problems
from bench.load import make_service, run_mixed
from framework._dev.restate_server import RestateServer

INVOCATIONS = 1000
TIMEOUT = 240.0
# Far above what it takes (about 55 MB, 20 MB over an idle process): a bound on leaks, not a
# benchmark.
PEAK_RSS_BOUND_MB = 250


def test_a_thousand_concurrent_mixed_invocations(
    restate_server: RestateServer, tmp_path: Path
) -> None:
    service, ledger = make_service("ours", tmp_path)
    problems = Problems()
    with service:
        restate_server.register(service.url)

        async def run() -> object:
            ingress = Ingress(restate_server.ingress_url)
            try:
                return await asyncio.wait_for(
                    run_mixed(
                        restate_server,
                        service,
                        ingress,
                        ledger,
                        prefix="",
                        tag=f"load-{uuid.uuid4().hex[:8]}",
                        count=INVOCATIONS,
                        problems=problems,
                    ),
                    TIMEOUT,
                )
            finally:
                await ingress.aclose()

        result = asyncio.run(run())
        log = service.log_text()
    print(f"\n{INVOCATIONS} mixed invocations at once: {result}")
    assert not problems.items, problems.items
    assert "Traceback" not in log, log[-4000:]
    peak_mb = result.peak / 1024  # type: ignore[attr-defined]
    assert peak_mb < PEAK_RSS_BOUND_MB, f"the service peaked at {peak_mb:.0f} MB"
