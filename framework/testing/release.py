"""Which restate-server release the harness runs: the official harness names a Docker image,
this one runs the npm release that image stands for."""

from __future__ import annotations

import contextlib
import os
import re
import warnings

from framework._dev.install import RESTATE_SERVER_VERSION
from framework._dev.restate_server import RestateServer
from framework.exceptions import RestateServerError

__all__ = [
    "DEFAULT_RESTATE_IMAGE",
    "check_running_version",
    "resolve_server_version",
    "server_version_for_image",
]

DEFAULT_RESTATE_IMAGE = "restatedev/restate:latest"

_RESTATE_IMAGE = re.compile(
    r"(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io|ghcr\.io)/)?"
    r"restatedev/restate(?::(?P<tag>[^:@/]+))?"
)
_RELEASE = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?")


def server_version_for_image(image: str) -> str:
    """The restate-server release (npm ``@restatedev/restate-server``) that stands in for the
    Docker image ``image``, which the official harness would run.

    ``restatedev/restate:X.Y.Z`` (also with ``docker.io/`` or ``ghcr.io/`` before it) is
    release ``X.Y.Z``; ``restatedev/restate:latest`` (or no tag) is this framework's pinned
    default, ``RESTATE_SERVER_VERSION`` (1.7.12), not whatever Docker Hub calls latest today.
    Anything else (a digest, a branch tag, another image) cannot be mapped: ValueError saying
    what to pass instead.
    """
    match = _RESTATE_IMAGE.fullmatch(image.strip())
    tag = match.group("tag") if match is not None else None
    if _names_latest(image):
        return RESTATE_SERVER_VERSION
    if tag is not None and _RELEASE.fullmatch(tag):
        return tag
    if "@" in image:
        problem = "pins an image digest, which names no restate-server release"
    elif match is not None:
        problem = f"has the tag {tag!r}, which is not a release version (X.Y.Z)"
    else:
        problem = "is not a restatedev/restate image (from Docker Hub or ghcr.io)"
    raise ValueError(
        f"restate_image={image!r} {problem}. The harness runs restate-server from npm, without "
        "Docker, so it needs a release: pass restate_image='restatedev/restate:X.Y.Z' (e.g. "
        f"'restatedev/restate:{RESTATE_SERVER_VERSION}', or ':latest' for that pinned default) "
        "or restate_server_version='X.Y.Z'. To run a restate-server binary of your own, set "
        "RESTATE_SERVER_BIN to its path."
    )


def _names_latest(image: str) -> bool:
    """``restatedev/restate`` with the tag ``latest`` or none."""
    match = _RESTATE_IMAGE.fullmatch(image.strip())
    return match is not None and match.group("tag") in (None, "latest")


def resolve_server_version(image: str, version: str | None) -> str:
    """The release to run for ``restate_image=image`` and ``restate_server_version=version``."""
    from_image = server_version_for_image(image)
    if version is None:
        return from_image
    if _names_latest(image):
        return version  # an explicit version says more than "latest"
    if from_image != version:
        raise ValueError(
            f"restate_image={image!r} means restate-server {from_image} but "
            f"restate_server_version={version!r} was asked for too; pass only one of them"
        )
    return version


def check_running_version(server: RestateServer, wanted: str) -> None:
    """Warn when RESTATE_SERVER_BIN (which wins over any version) runs another release."""
    if not os.environ.get("RESTATE_SERVER_BIN"):
        return
    with contextlib.suppress(RestateServerError, KeyError):
        running = str(server.version()["version"])
        if running != wanted:
            warnings.warn(
                f"restate-server {wanted} was asked for, but RESTATE_SERVER_BIN runs {running}; "
                "unset RESTATE_SERVER_BIN to run the release asked for",
                stacklevel=3,
            )
