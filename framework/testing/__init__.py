"""Test your services against a real Restate server, without Docker.

``create_test_harness(app)`` starts a restate-server (from the npm package, installed once into
``~/.cache/framework``) on free loopback ports with its data in a temporary dir, serves the app
on another free port, registers it, and yields a ``HarnessEnvironment`` with a ready ingress
client::

    from framework.testing import create_test_harness

    async def test_greet() -> None:
        async with create_test_harness(my_module.app) as env:
            assert await env.client.service_call(greet, "Ann") == "Hello, Ann!"

An app object is served in this process (granian in a background thread); a
``"module:attribute"`` string is served in a child process (``python -m framework serve``).
``restate_image=`` (the official harness's Docker image) picks the restate-server release:
``restatedev/restate:X.Y.Z`` runs X.Y.Z, ``:latest`` the pinned 1.7.12 (see
``server_version_for_image``). ``framework.harness`` has the official module's other names.
``always_replay=True`` makes the server suspend the invocation at every await that is not
complete, so every resume replays the journal: code that is not deterministic fails at once
(journal mismatch, code 570) instead of on the rare real retry. ``disable_retries=True`` makes
an invocation that fails with a retryable error fail for good after its first attempt.

As a pytest plugin (``pytest_plugins = ["framework.testing"]``) it provides one server per test
session and a factory that serves apps against it (see ``restate_test_harness``); the command
line options ``--restate-always-replay`` and ``--restate-disable-retries`` configure that
server. (PYTEST_DONT_REWRITE: the plugin has no asserts for pytest to rewrite.)

The parts, each in a module of its own: ``settings`` (server settings, timeouts),
``release`` (image name to restate-server release), ``environment`` (``HarnessEnvironment``),
``serving`` (the app in process or in a child), ``logs`` (following logs), ``harness``
(``RestateTestHarness``, ``create_test_harness``...), ``session`` (``HarnessSession``) and
``plugin`` (the pytest hooks and fixtures). This module offers their names, as it always has.
"""

from __future__ import annotations

import importlib.util

from framework._dev.install import RESTATE_SERVER_VERSION as RESTATE_SERVER_VERSION
from framework._dev.processes import free_port as free_port
from framework._dev.replay import RecordedInvocation, ReplayReport, replay
from framework._dev.replay import load as load_journals
from framework._dev.restate_server import RestateServer as RestateServer
from framework._dev.service_process import ServiceProcess as ServiceProcess
from framework._endpoint.asgi import ASGIApp as ASGIApp
from framework._runtime.codec import JournalValueCodec as JournalValueCodec
from framework._server.common import load_app as load_app
from framework._server.granian import granian_options as granian_options
from framework._server.granian import serve_embedded as serve_embedded
from framework.exceptions import RestateServerError as RestateServerError
from framework.testing.environment import HarnessEnvironment
from framework.testing.harness import (
    RestateTestHarness,
    TestConfiguration,
    create_test_harness,
    test_harness,
)
from framework.testing.release import DEFAULT_RESTATE_IMAGE as DEFAULT_RESTATE_IMAGE
from framework.testing.release import server_version_for_image
from framework.testing.serving import AppLike as AppLike
from framework.testing.serving import InProcessApp as InProcessApp
from framework.testing.session import HarnessSession as HarnessSession
from framework.testing.settings import APP_GRACEFUL_TIMEOUT as APP_GRACEFUL_TIMEOUT
from framework.testing.settings import APP_START_TIMEOUT as APP_START_TIMEOUT
from framework.testing.settings import CLIENT_TIMEOUT as CLIENT_TIMEOUT
from framework.testing.settings import REGISTER_TIMEOUT as REGISTER_TIMEOUT
from framework.testing.settings import SERVER_START_TIMEOUT as SERVER_START_TIMEOUT
from framework.testing.settings import STOP_TIMEOUT as STOP_TIMEOUT
from framework.testing.settings import (
    always_replay_env,
    disable_retries_env,
    harness_server_env,
)

# The plugin's hooks and fixtures must be attributes of this module, the one pytest_plugins
# names; without pytest (the harness used on its own) there is no plugin to offer.
if importlib.util.find_spec("pytest") is not None:
    from framework.testing.plugin import pytest_addoption as pytest_addoption
    from framework.testing.plugin import restate_harness_session as restate_harness_session
    from framework.testing.plugin import restate_test_harness as restate_test_harness

__all__ = [
    "HarnessEnvironment",
    "RecordedInvocation",
    "ReplayReport",
    "RestateTestHarness",
    "TestConfiguration",
    "always_replay_env",
    "create_test_harness",
    "disable_retries_env",
    "harness_server_env",
    "load_journals",
    "replay",
    "server_version_for_image",
    "test_harness",
]
