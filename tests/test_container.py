"""The Dockerfile and compose.yaml, checked without a Docker engine.

The Dockerfile is parsed and its steps are replayed on this machine: each path the image
uses (``/src``, ``/opt/venv``, ``/app``) maps to a directory under ``tmp_path``; the build
stage's COPY and RUN lines run as written (``sh -c``, the stage's ENV, its WORKDIR), so the
project really is installed into a fresh virtual environment by ``pip install .`` (from the
package index pip is configured with); the final stage's COPY lines are replayed, and its
CMD then serves the example services from that venv, with only the bind address changed to
a free loopback port, and nothing of this repository on the import path. The HEALTHCHECK
command runs against it too. What is not replayed, and checked by reading instead: the base
image (this machine's Python stands in for python:3.11-slim) and the ``useradd`` RUN (it
needs root); USER must be a numeric non-root uid, the one that RUN creates.

compose.yaml is read with PyYAML and checked against the Dockerfile and the CLI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from framework.__main__ import _parser
from framework._dev.install import RESTATE_SERVER_VERSION
from framework._dev.processes import free_port
from framework._server.serve import GRACEFUL_TIMEOUT

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
MANIFEST_V3 = "application/vnd.restate.endpointmanifest.v3+json"
# The absolute paths the image uses; each maps to a directory of its own under tmp_path.
IMAGE_PATHS = ("/opt/venv", "/src", "/app")


# -- the Dockerfile -------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"expected one {keyword} in the stage FROM {self.base}: {found}"
        return found[0]


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their (KEYWORD, arguments) instructions; continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            assert len(parts) in (1, 3), f"FROM {args}"
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _healthcheck_command(args: str) -> list[str]:
    options, _, command = args.partition("CMD ")
    assert command, f"HEALTHCHECK {args}"
    for option in options.split():
        assert re.fullmatch(r"--(interval|timeout|start-period|retries)=\w+", option), option
    return _exec_form(command)


def _bind_port(cmd: list[str]) -> int:
    bind = cmd[cmd.index("--bind") + 1]
    host, _, port = bind.rpartition(":")
    assert host == "0.0.0.0", f"the image must listen on all interfaces, not {bind}"
    return int(port)


class Replay:
    """Runs Dockerfile instructions on this machine, image paths mapped under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mapped = {path: root / path.strip("/").replace("/", "-") for path in IMAGE_PATHS}
        pybin = root / "base-image-bin"
        pybin.mkdir()
        # The base image's `python` (python:3.11-slim): this machine's base interpreter.
        base_python = getattr(sys, "_base_executable", sys.executable)
        wrapper = pybin / "python"
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(base_python)} "$@"\n')
        wrapper.chmod(0o755)
        self.base_path = f"{pybin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"

    def path(self, image_path: str, cwd: Path | None = None) -> Path:
        if not image_path.startswith("/"):
            assert cwd is not None, image_path
            return cwd / image_path
        for known, local in self.mapped.items():
            if image_path == known or image_path.startswith(known + "/"):
                return local / image_path[len(known) :].lstrip("/")
        raise AssertionError(
            f"{image_path} is not one of the image paths this test maps ({IMAGE_PATHS}); "
            "add it to IMAGE_PATHS"
        )

    def map_value(self, value: str) -> str:
        """An ENV value with the image paths in it (alone or in a PATH list) mapped."""
        pattern = "|".join(re.escape(p) for p in IMAGE_PATHS)
        return re.sub(
            rf"(?<![\w/])({pattern})(?=$|[/:])", lambda m: str(self.path(m.group(1))), value
        )

    def env_line(self, args: str, env: dict[str, str]) -> None:
        for pair in shlex.split(args):
            key, sep, value = pair.partition("=")
            assert sep, f"ENV {args}: write ENV KEY=VALUE"
            value = re.sub(
                r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value
            )
            env[key] = self.map_value(value)


def _copy(source: Path, target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    if source.is_dir():
        shutil.copytree(source, target, ignore=ignore, dirs_exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _copy_line(args: str) -> tuple[str | None, list[str], str]:
    parts = shlex.split(args)
    source_stage = None
    while parts and parts[0].startswith("--"):
        option = parts.pop(0)
        assert option.startswith("--from="), f"COPY option {option} is not mirrored here"
        source_stage = option.removeprefix("--from=")
    assert len(parts) >= 2, f"COPY {args}"
    return source_stage, parts[:-1], parts[-1]


def _wait_health(url: str, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(http1=False, http2=True, trust_env=False, timeout=2) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise AssertionError(f"the CMD exited with code {process.returncode}")
            assert time.monotonic() < deadline, f"{url} did not answer within {timeout}s"
            time.sleep(0.1)


def test_dockerfile_static_shape() -> None:
    build, final = parse_dockerfile(DOCKERFILE.read_text())
    assert build.name and build.base == final.base == "python:3.11-slim"
    assert final.name is None
    # The venv is copied to the path it was built at (its scripts name that interpreter).
    copies = [_copy_line(args) for args in final.all("COPY")]
    from_build = [(src, dst) for stage, src, dst in copies if stage == build.name]
    assert from_build == [(["/opt/venv"], "/opt/venv")], from_build
    assert build.all("ENV").count("VIRTUAL_ENV=/opt/venv") == 1
    # Only the services come from the build context into the final image.
    assert [src for stage, src, _ in copies if stage is None] == [["services"]]
    # Non-root, numerically (Kubernetes runAsNonRoot), and that uid exists in the image.
    user = final.one("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or int(gid) > 0), user
    (useradd,) = final.all("RUN")
    assert useradd.startswith("useradd ") and f"--uid {uid}" in useradd, useradd
    # One port everywhere: EXPOSE, the CMD's bind, the HEALTHCHECK.
    cmd = _exec_form(final.one("CMD"))
    assert cmd[:5] == ["python", "-m", "framework", "serve", "services.app:app"], cmd
    port = _bind_port(cmd)
    assert final.one("EXPOSE") == str(port)
    health = _healthcheck_command(final.one("HEALTHCHECK"))
    assert f"http://127.0.0.1:{port}/health" in " ".join(health), health
    # The CLI accepts the CMD as written.
    parsed = _parser().parse_args(cmd[3:])
    assert (parsed.command, parsed.app, parsed.workers) == ("serve", "services.app:app", 1)


def test_image_steps_install_and_serve_the_services(tmp_path: Path) -> None:
    build, final = parse_dockerfile(DOCKERFILE.read_text())
    replay = Replay(tmp_path)
    timings: dict[str, float] = {}

    # -- build stage: copy the context, run the RUN lines -----------------------------------
    started = time.monotonic()
    build_env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    build_env["PATH"] = replay.base_path
    workdir: Path | None = None
    for keyword, args in build.instructions:
        if keyword == "ENV":
            replay.env_line(args, build_env)
        elif keyword == "WORKDIR":
            workdir = replay.path(args, workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            stage, sources, target = _copy_line(args)
            assert stage is None and workdir is not None, args
            for source in sources:
                destination = replay.path(target, workdir)
                if target.endswith("/"):
                    destination = destination / Path(source).name
                _copy(ROOT / source, destination)
        elif keyword == "RUN":
            assert workdir is not None
            result = subprocess.run(
                ["sh", "-c", args],
                cwd=workdir,
                env=build_env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, f"RUN {args}\n{result.stdout}\n{result.stderr}"
        else:
            raise AssertionError(f"{keyword} in the build stage is not mirrored by this test")
    timings["build stage"] = time.monotonic() - started
    venv = replay.path("/opt/venv")
    assert (venv / "bin" / "python").exists()

    # -- final stage: ENV, COPY, WORKDIR (the useradd RUN and USER are checked above) -------
    env = {"PATH": replay.base_path, "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    workdir = None
    for keyword, args in final.instructions:
        if keyword == "ENV":
            replay.env_line(args, env)
        elif keyword == "WORKDIR":
            workdir = replay.path(args, workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            stage, sources, target = _copy_line(args)
            if stage is not None:  # the venv, at the same path: already in place
                assert [replay.path(s) for s in sources] == [replay.path(target)]
                continue
            assert workdir is not None
            for source in sources:
                _copy(ROOT / source, replay.path(target, workdir))
        elif keyword == "RUN":
            assert args.startswith("useradd "), f"RUN {args} is not mirrored by this test"
        elif keyword not in ("USER", "EXPOSE", "HEALTHCHECK", "CMD"):
            raise AssertionError(f"{keyword} in the final stage is not mirrored by this test")
    assert workdir is not None and (workdir / "services" / "app.py").exists()
    assert not (workdir / "framework").exists()

    # The framework is imported from the venv, not from this repository.
    where = subprocess.run(
        ["python", "-c", "import framework; print(framework.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    assert shutil.which("python", path=env["PATH"]) == str(venv / "bin" / "python")

    # -- the CMD, on a free loopback port; the HEALTHCHECK against it -----------------------
    cmd = _exec_form(final.one("CMD"))
    image_port = _bind_port(cmd)
    port = free_port()
    cmd[cmd.index("--bind") + 1] = f"127.0.0.1:{port}"
    health = [
        part.replace(f"127.0.0.1:{image_port}", f"127.0.0.1:{port}")
        for part in _healthcheck_command(final.one("HEALTHCHECK"))
    ]

    def healthcheck() -> int:
        return subprocess.run(
            health, cwd=workdir, env=env, capture_output=True, timeout=30
        ).returncode

    assert healthcheck() != 0  # nothing serves yet: unhealthy
    started = time.monotonic()
    process = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_health(f"http://127.0.0.1:{port}/health", process)
        timings["CMD up"] = time.monotonic() - started
        assert healthcheck() == 0
        with httpx.Client(http1=False, http2=True, trust_env=False, timeout=10) as client:
            response = client.get(
                f"http://127.0.0.1:{port}/discover", headers={"accept": MANIFEST_V3}
            )
        assert response.status_code == 200 and response.http_version == "HTTP/2"
        assert response.headers["content-type"] == MANIFEST_V3
        served = {service["name"] for service in response.json()["services"]}
        from services.app import app as example_app

        assert served == set(example_app.services), served
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)  # docker stop
        assert process.wait(GRACEFUL_TIMEOUT + 10) == 0
        timings["stop"] = time.monotonic() - stopping
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
    assert "Traceback" not in output, output
    print(", ".join(f"{what}: {seconds:.1f}s" for what, seconds in timings.items()))


# -- compose.yaml ---------------------------------------------------------------------------


def test_compose_file_matches_the_image_and_the_cli() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())

    _, final = parse_dockerfile(DOCKERFILE.read_text())
    cmd = _exec_form(final.one("CMD"))
    port = _bind_port(cmd)
    services = compose["services"]
    assert set(services) == {"restate", "service", "register"}

    restate = services["restate"]
    image, _, tag = restate["image"].rpartition(":")
    assert image in ("docker.restate.dev/restatedev/restate", "restatedev/restate")
    assert tag == RESTATE_SERVER_VERSION  # the version the test suite runs against
    data_dir = restate["environment"]["RESTATE_BASE_DIR"]
    assert restate["volumes"] == [f"restate-data:{data_dir}"]
    assert "restate-data" in compose["volumes"]
    assert {mapping.split(":")[-1] for mapping in restate["ports"]} == {"8080", "9070"}

    service = services["service"]
    assert service["build"] == "."
    assert service["command"] == cmd  # as the image's CMD
    assert service["expose"] == [str(port)]

    register = services["register"]
    assert register["build"] == "."
    assert register["restart"] == "no"
    assert set(register["depends_on"]) == {"restate", "service"}
    command = register["command"]
    assert command[:3] == ["python", "-m", "framework"]
    args = _parser().parse_args(command[3:])
    assert args.command == "register" and args.wait > 0
    assert args.uri == f"http://service:{port}"
    assert args.admin_url == "http://restate:9070"
