"""The endpoint spoken to directly over HTTP/2: a prepared journal in, exact frames out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from framework._dev.service_process import ServiceProcess
from framework._protocol import (
    REQUESTED_ACK_FLAG,
    EndMessage,
    InputCommandMessage,
    Message,
    OutputCommandMessage,
    ProposeRunCompletionMessage,
    RunCommandMessage,
    RunCompletionNotificationMessage,
    SuspensionMessage,
)
from tests.journals import decode_frames_with_flags, journal, json, run_entries

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    log = tmp_path_factory.mktemp("direct") / "service.log"
    with (
        ServiceProcess("tests.e2e_services:app_v7", log_path=log, cwd=ROOT) as service,
        httpx.Client(base_url=service.url, http1=False, http2=True, timeout=30) as client,
    ):
        yield client


def invoke(
    client: httpx.Client, path: str, body: bytes, version: int = 6
) -> list[tuple[Message, int]]:
    """POST a prepared journal; the answer's messages with their frame flags."""
    content_type = f"application/vnd.restate.invocation.v{version}"
    response = client.post(
        path, content=body, headers={"content-type": content_type, "accept": content_type}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == content_type
    return decode_frames_with_flags(response.content)


@pytest.mark.parametrize("version", [5, 6, 7])
def test_replayed_runs_are_not_executed_again(endpoint: httpx.Client, version: int) -> None:
    results = [json("<from journal>"), json(7), json(1234.5)]
    names = ["LLM call", "generate number", "time"]
    entries: list[Message] = [InputCommandMessage(value=json("Ann"))]
    for completion_id, (name, value) in enumerate(zip(names, results, strict=True), start=1):
        entries.extend(run_entries(completion_id, name, value))
    frames = invoke(endpoint, "/invoke/GreeterV7/greet", journal(*entries), version)
    assert [type(m) for m, _ in frames] == [OutputCommandMessage, EndMessage]
    answer = frames[0][0]
    assert isinstance(answer, OutputCommandMessage) and answer.value is not None
    output = msgspec.json.decode(answer.value)
    assert output.startswith("<from journal> 7 ") and output.endswith(" 1234.5")


@pytest.mark.parametrize("version", [6, 7])
def test_new_run_is_proposed_then_suspends(endpoint: httpx.Client, version: int) -> None:
    body = journal(InputCommandMessage(value=json("Bob")))
    frames = invoke(endpoint, "/invoke/GreeterV7/greet", body, version)
    expected_ack = REQUESTED_ACK_FLAG if version >= 7 else 0
    assert frames[0] == (RunCommandMessage(result_completion_id=1, name="LLM call"), 0)
    assert frames[1] == (
        ProposeRunCompletionMessage(result_completion_id=1, value=json("<greet Bob>")),
        expected_ack,
    )
    suspension, _flags = frames[2]
    assert isinstance(suspension, SuspensionMessage) and len(frames) == 3
    if version >= 7:
        assert suspension.awaiting_on is not None
        assert suspension.awaiting_on.waiting_completions == [1]
    else:
        assert suspension.waiting_completions == [1]


def test_content_type_errors(endpoint: httpx.Client) -> None:
    response = endpoint.post(
        "/invoke/GreeterV7/greet", content=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 415
    assert "Restate" in response.text
    response = endpoint.post(
        "/invoke/GreeterV7/greet",
        content=b"",
        headers={"content-type": "application/vnd.restate.invocation.v4"},
    )
    assert response.status_code == 415
    assert "5" in response.text and "7" in response.text
    assert endpoint.post("/invoke/Nope/greet", content=b"").status_code == 404
    assert endpoint.get("/health").status_code == 200


def test_journal_mismatch_frame(endpoint: httpx.Client) -> None:
    from framework._protocol import ErrorMessage

    body = journal(
        InputCommandMessage(value=json("Ann")),
        RunCommandMessage(result_completion_id=1, name="renamed step"),
        RunCompletionNotificationMessage(completion_id=1, value=json("x")),
    )
    frames = invoke(endpoint, "/invoke/GreeterV7/greet", body)
    assert len(frames) == 1
    error = frames[0][0]
    assert isinstance(error, ErrorMessage)
    assert error.code == 570
    assert error.related_command_index == 1
    assert error.related_command_name == "renamed step"
    assert error.related_command_type == RunCommandMessage.TYPE
