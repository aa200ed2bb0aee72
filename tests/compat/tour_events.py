# Compat copy of restatedev/examples python/tutorials/tour-of-orchestration-python/app/events/service.py @ 2d429daae784
# https://github.com/restatedev/examples/blob/2d429daae784d20982691fb31431702b4ad30a6b/python/tutorials/tour-of-orchestration-python/app/events/service.py
# shown on https://docs.restate.dev/tour/microservice-orchestration (Awakeables: waiting for events)
# Verbatim below this header except the import lines (restate -> framework, and the
# example's own modules -> tests.compat.*). Upstream code: not linted here.
# ruff: noqa
import framework as restate

from tests.compat.tour_utils import init_payment
from tests.compat.tour_types import PaymentRequest, PaymentResult, ConfirmationRequest


payments = restate.Service("Payments")


@payments.handler()
async def process(ctx: restate.Context, req: PaymentRequest) -> PaymentResult:

    # Create awakeable to wait for webhook payment confirmation
    confirmation_id, confirmation_promise = ctx.awakeable(type_hint=PaymentResult)

    # Initiate payment with external provider (Stripe, PayPal, etc.)
    payment_id = str(ctx.uuid())
    await ctx.run_typed(
        "pay",
        init_payment,
        req=req,
        payment_id=payment_id,
        confirmation_id=confirmation_id,
    )

    # Wait for external payment provider to call our webhook
    return await confirmation_promise


@payments.handler()
async def confirm(ctx: restate.Context, confirmation: ConfirmationRequest) -> None:
    # Resolve the awakeable to continue the payment flow
    ctx.resolve_awakeable(confirmation.id, confirmation.result)
