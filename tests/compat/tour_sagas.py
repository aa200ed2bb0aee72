# Compat copy of restatedev/examples python/tutorials/tour-of-orchestration-python/app/sagas/service.py @ 2d429daae784
# https://github.com/restatedev/examples/blob/2d429daae784d20982691fb31431702b4ad30a6b/python/tutorials/tour-of-orchestration-python/app/sagas/service.py
# shown on https://docs.restate.dev/tour/microservice-orchestration (Sagas)
# Verbatim below this header except the import lines (restate -> framework, and the
# example's own modules -> tests.compat.*). Upstream code: not linted here.
# ruff: noqa
import framework as restate

from tests.compat.tour_utils import (
    create_recurring_payment,
    remove_recurring_payment,
    create_subscription,
    remove_subscription,
)
from tests.compat.tour_types import SubscriptionRequest


subscription_saga = restate.Service("SubscriptionSaga")


@subscription_saga.handler()
async def add(ctx: restate.Context, req: SubscriptionRequest) -> None:
    compensations = []

    try:
        payment_id = str(ctx.uuid())

        # Add compensation for payment
        compensations.append(
            lambda: ctx.run_typed(
                "undo-pay", remove_recurring_payment, payment_id=payment_id
            )
        )

        # Create payment
        pay_ref = await ctx.run_typed(
            "pay",
            create_recurring_payment,
            credit_card=req.credit_card,
            payment_id=payment_id,
        )

        # Process subscriptions
        for subscription in req.subscriptions:
            # Add compensation for this subscription
            compensations.append(
                lambda s=subscription: ctx.run_typed( # type: ignore
                    f"undo-{s}",
                    remove_subscription,
                    user_id=req.user_id,
                    subscription=s,
                )
            )

            # Create subscription
            await ctx.run_typed(
                f"add-{subscription}",
                create_subscription,
                user_id=req.user_id,
                subscription=subscription,
                payment_ref=pay_ref,
            )

    except restate.TerminalError as e:
        # Run compensations in reverse order
        for compensation in reversed(compensations):
            await compensation()
        raise e
