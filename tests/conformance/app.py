"""The one app serving every conformance service (``tests.conformance.app:app``)."""

from __future__ import annotations

import os

import framework
from tests.conformance.awakeable_holder import awakeable_holder
from tests.conformance.cancel_test import blocking_service
from tests.conformance.cancel_test import runner as cancel_runner
from tests.conformance.failing import failing
from tests.conformance.interpreter import interpreter
from tests.conformance.kill_test import runner as kill_runner
from tests.conformance.kill_test import singleton as kill_singleton
from tests.conformance.non_deterministic import non_deterministic
from tests.conformance.proxy import proxy
from tests.conformance.state_objects import counter, list_object, map_object
from tests.conformance.utils_service import test_utils
from tests.conformance.workflow import block_and_wait

# The key of the Restate server allowed to call, when requests must be signed (as the
# conformance suite's request-signing deployment is configured).
SIGNING_KEY_ENV = "E2E_REQUEST_SIGNING"
_signing_key = os.environ.get(SIGNING_KEY_ENV)

app = framework.app(
    [
        awakeable_holder,
        block_and_wait,
        blocking_service,
        cancel_runner,
        counter,
        failing,
        interpreter,
        kill_runner,
        kill_singleton,
        list_object,
        map_object,
        non_deterministic,
        proxy,
        test_utils,
    ],
    identity_keys=[_signing_key] if _signing_key else None,
)
