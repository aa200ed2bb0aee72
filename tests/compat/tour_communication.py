# Compat copy of restatedev/examples python/tutorials/tour-of-orchestration-python/app/communication/service.py @ 2d429daae784
# https://github.com/restatedev/examples/blob/2d429daae784d20982691fb31431702b4ad30a6b/python/tutorials/tour-of-orchestration-python/app/communication/service.py
# shown on https://docs.restate.dev/tour/microservice-orchestration (Service communication)
# Verbatim below this header except the import lines (restate -> framework, and the
# example's own modules -> tests.compat.*). Upstream code: not linted here.
# ruff: noqa
import framework as restate
from tests.compat.tour_utils import day_before
from tests.compat.tour_types import PurchaseTicketRequest
from tests.compat.tour_utils import charge, email_ticket, send_reminder_email


# Concert Ticketing Service
concert_ticketing_service = restate.Service("ConcertTicketingService")


@concert_ticketing_service.handler()
async def buy(ctx: restate.Context, req: PurchaseTicketRequest) -> str:
    # Request-response call - wait for payment to complete
    pay_ref = await ctx.service_call(charge, req)

    # One-way message - fire and forget ticket delivery
    ctx.service_send(email_ticket, req)

    # Delayed message - schedule reminder for day before concert
    ctx.service_send(send_reminder_email, req, send_delay=day_before(req.concert_date))

    return f"Ticket purchased successfully with payment reference: {pay_ref}"
