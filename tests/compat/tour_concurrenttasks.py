# Compat copy of restatedev/examples python/tutorials/tour-of-orchestration-python/app/concurrenttasks/service.py @ 2d429daae784
# https://github.com/restatedev/examples/blob/2d429daae784d20982691fb31431702b4ad30a6b/python/tutorials/tour-of-orchestration-python/app/concurrenttasks/service.py
# shown on https://docs.restate.dev/tour/microservice-orchestration (Concurrent tasks)
# Verbatim below this header except the import lines (restate -> framework, and the
# example's own modules -> tests.compat.*). Upstream code: not linted here.
# ruff: noqa
import framework as restate
import asyncio

from tests.compat.tour_utils import create_recurring_payment, create_subscription
from tests.compat.tour_types import SubscriptionRequest, SubscriptionResult


parallel_subscription_service = restate.Service("ParallelSubscriptionService")


@parallel_subscription_service.handler()
async def add(ctx: restate.Context, req: SubscriptionRequest) -> SubscriptionResult:
    payment_id = str(ctx.uuid())
    pay_ref = await ctx.run_typed(
        "pay",
        create_recurring_payment,
        credit_card=req.credit_card,
        payment_id=payment_id,
    )

    # Start all subscriptions in parallel
    subscription_tasks = []
    for subscription in req.subscriptions:
        task = ctx.run_typed(
            f"add-{subscription}",
            create_subscription,
            user_id=req.user_id,
            subscription=subscription,
            payment_ref=pay_ref,
        )
        subscription_tasks.append(task)

    # Wait for all subscriptions to complete
    await restate.gather(*subscription_tasks)

    return SubscriptionResult(success=True, payment_ref=pay_ref)
