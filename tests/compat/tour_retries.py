# Compat copy of restatedev/docs-restate snippets/python/src/tour/microservices/retries.py @ 8d549e91b5fa
# https://github.com/restatedev/docs-restate/blob/8d549e91b5fa4b3b14fbe0d2bff7ab2374cee0ed/snippets/python/src/tour/microservices/retries.py
# shown on https://docs.restate.dev/tour/microservice-orchestration (Resilient actions / retries)
# Verbatim below this header except the import lines (restate -> framework, and the
# example's own modules -> tests.compat.*). Upstream code: not linted here.
# ruff: noqa
from datetime import timedelta

import framework as restate
from framework import Context, Service, RunOptions
import uuid
from typing import TypedDict, List, Optional

my_service = Service("MyService")


class SubscriptionRequest(TypedDict):
    userId: str
    creditCard: str
    subscriptions: List[str]


def create_recurring_payment(credit_card: str, payment_id: str) -> str:
    """Mock function to create recurring payment"""
    return f"payRef-{uuid.uuid4()}"


@my_service.handler("myHandler")
async def my_service_handler(ctx: Context, req: SubscriptionRequest):
    payment_id = f"payment-{uuid.uuid4()}"
    # <start_here>
    pay_ref = await ctx.run_typed(
        "pay",
        lambda: create_recurring_payment(req["creditCard"], payment_id),
        restate.RunOptions(max_attempts=10, max_retry_duration=timedelta(seconds=30)),
    )
    # <end_here>


app = restate.app([my_service])
