"""Finding the restate-server binary, installing it from npm on first use.

Each release is installed once into a cache dir (``$FRAMEWORK_CACHE_DIR``, default
``~/.cache/framework``), under a file lock so that concurrent test runs install it once; an
environment variable naming a binary of one's own wins over all of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from framework._dev.wait import WaitTimeout, wait_until
from framework.exceptions import RestateServerError

__all__ = [
    "RESTATE_SERVER_VERSION",
    "cache_dir",
    "ensure_restate_server",
    "find_npm_binary",
    "npm_binary",
]

RESTATE_SERVER_VERSION = "1.7.12"

_SERVER_PACKAGE = "@restatedev/restate-server"
_NPM_TIMEOUT = 900.0
_LOCK_TIMEOUT = 1200.0


def cache_dir() -> Path:
    """Where installed binaries are kept."""
    configured = os.environ.get("FRAMEWORK_CACHE_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "framework"


def _platform_suffix() -> str:
    """``linux-x64``, ``darwin-arm64``...: how the npm packages name a platform."""
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{system}-{arch}"


def find_npm_binary(prefix: Path, tool: str) -> Path | None:
    """The ``tool`` binary an npm install into ``prefix`` brought, if any.

    Restate's npm packages carry the binary in a per-platform dependency
    (``@restatedev/<tool>-<os>-<arch>``): this machine's is preferred, any other taken.
    """
    scope = prefix / "node_modules" / "@restatedev"
    preferred = scope / f"{tool}-{_platform_suffix()}" / "bin" / tool
    if preferred.is_file():
        return preferred
    for candidate in sorted(scope.glob(f"{tool}-*/bin/{tool}")):
        if candidate.is_file():
            return candidate
    return None


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:

        def locked() -> bool:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            wait_until(locked, f"the install lock {path}", timeout=timeout, interval=0.2)
        except WaitTimeout:
            raise RestateServerError(
                f"waited {timeout:.0f}s for the install lock {path}; another process "
                "is still installing restate-server. If none is, delete the lock file "
                "and try again."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def npm_binary(tool: str, package: str, version: str, env_var: str) -> Path:
    """The path of ``tool`` (a binary that npm ``package`` brings), installed on first use.

    ``$<env_var>`` wins when set. Otherwise it is installed into
    ``$FRAMEWORK_CACHE_DIR/<tool>-<version>`` (default ``~/.cache/framework``), once: concurrent
    callers wait on a file lock, and later calls find it in place.
    """
    configured = os.environ.get(env_var)
    if configured:
        binary = Path(configured).expanduser()
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            raise RestateServerError(
                f"{env_var}={configured!r} is not an executable file; point it at a {tool} "
                "binary or unset it to install one with npm."
            )
        return binary

    cache = cache_dir()
    prefix = cache / f"{tool}-{version}"
    found = find_npm_binary(prefix, tool)
    if found is not None:
        return found

    with _file_lock(cache / f"{tool}-{version}.lock", _LOCK_TIMEOUT):
        found = find_npm_binary(prefix, tool)  # another process may have installed it meanwhile
        if found is not None:
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise RestateServerError(
                f"npm was not found on PATH, so {tool} {version} cannot be installed. "
                f"Install Node.js (it brings npm), or set {env_var} to a {tool} binary."
            )
        # Install into a staging dir and rename it into place, so an interrupted install never
        # leaves a half-written binary where the fast path above would trust it.
        staging = cache / f".{tool}-{version}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        command = [
            npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--prefix",
            str(staging),
            f"{package}@{version}",
        ]
        env = dict(os.environ, DO_NOT_TRACK="1", SCARF_ANALYTICS="false")
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=env,
                timeout=_NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestateServerError(
                f"`{' '.join(command)}` did not finish within {_NPM_TIMEOUT:.0f}s; check the npm "
                f"registry is reachable, or set {env_var} to a {tool} binary."
            ) from error
        if result.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            stderr_tail = "\n".join(result.stderr.rstrip().splitlines()[-20:])
            raise RestateServerError(
                f"`{' '.join(command)}` failed (exit code {result.returncode}); check the npm "
                f"registry is reachable, or set {env_var} to a {tool} binary.\n"
                f"npm stderr (tail):\n{stderr_tail}"
            )
        if find_npm_binary(staging, tool) is None:
            shutil.rmtree(staging, ignore_errors=True)
            raise RestateServerError(
                f"npm installed {package}@{version} but no {tool} binary for this platform "
                f"({tool}-{_platform_suffix()}) came with it; set {env_var} to a {tool} binary "
                "built for this machine."
            )
        shutil.rmtree(prefix, ignore_errors=True)
        staging.rename(prefix)
        found = find_npm_binary(prefix, tool)
        assert found is not None
        return found


def ensure_restate_server(version: str = RESTATE_SERVER_VERSION) -> Path:
    """The path of a restate-server binary, installing it with npm on first use.

    ``$RESTATE_SERVER_BIN`` wins when set. Otherwise the binary is installed into
    ``$FRAMEWORK_CACHE_DIR/restate-server-<version>`` (default ``~/.cache/framework``), once:
    concurrent callers wait on a file lock, and later calls find it in place.
    """
    return npm_binary("restate-server", _SERVER_PACKAGE, version, "RESTATE_SERVER_BIN")
