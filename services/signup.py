"""A workflow: sign a user up, wait (durably, for days if need be) for the e-mail link to be
clicked, with a deadline. The click arrives through a shared handler of the same workflow.

    curl -X POST 127.0.0.1:8080/Signup/ann/run/send -H 'content-type: application/json' \\
         -d '{"email": "ann@example.com"}'
    # the service log prints the secret; then:
    curl -X POST 127.0.0.1:8080/Signup/ann/click -H 'content-type: application/json' -d '"<secret>"'
    curl 127.0.0.1:8080/restate/workflow/Signup/ann/output
"""

import logging
from datetime import timedelta

from framework import (
    TerminalError,
    Workflow,
    WorkflowContext,
    WorkflowSharedContext,
    getLogger,
    select,
)

signup = Workflow("Signup")
logger = getLogger(__name__)  # silent while a handler replays
logger.setLevel(logging.INFO)


def send_email(address: str, secret: str) -> None:
    # Stands in for a mail API; the log line shows what would be sent.
    logger.info("mail to %s: click the link with secret %s", address, secret)


@signup.main()
async def run(ctx: WorkflowContext, user: dict[str, str]) -> str:
    email = user["email"]
    ctx.set("status", "waiting for e-mail confirmation")
    secret = str(ctx.uuid())
    await ctx.run_typed("send confirmation mail", send_email, address=email, secret=secret)
    match await select(
        clicked=ctx.promise("link-clicked", type_hint=str).value(),
        timeout=ctx.sleep(timedelta(days=1)),
    ):
        case ["clicked", clicked] if clicked == secret:
            ctx.set("status", "confirmed")
            return f"{ctx.key()} is signed up"
        case ["clicked", _]:
            ctx.set("status", "wrong secret")
            raise TerminalError("the confirmation link did not match", status_code=400)
        case _:
            ctx.set("status", "expired")
            raise TerminalError("the confirmation link expired", status_code=408)


@signup.handler()
async def click(ctx: WorkflowSharedContext, secret: str) -> None:
    """The user clicked the link: resolve the promise ``run`` is waiting for."""
    await ctx.promise("link-clicked", type_hint=str).resolve(secret)


@signup.handler()
async def status(ctx: WorkflowSharedContext) -> str | None:
    return await ctx.get("status", type_hint=str)
