"""A saga: book a flight and a hotel, then pay; if payment fails for good, undo the
bookings (in reverse order). Each step runs once, even if the process dies in between.

    curl -X POST 127.0.0.1:8080/Trips/book -H 'content-type: application/json' \\
         -d '{"traveller": "Ann", "card": "4242"}'
    # a card starting with 0 is declined: both bookings are cancelled, the call fails (402)
"""

from collections.abc import Awaitable, Callable

from framework import Context, Service, TerminalError

payments = Service("Payments")
trips = Service("Trips")


@payments.handler()
async def charge(ctx: Context, request: dict[str, str]) -> str:
    if request["card"].startswith("0"):
        raise TerminalError(f"card {request['card']} declined", status_code=402)
    return f"payment-{ctx.uuid()}"


def reserve(kind: str, traveller: str) -> str:
    return f"{kind}-for-{traveller}"  # stands in for a booking API


def release(booking: str) -> None:
    print(f"released {booking}")  # stands in for the booking API's cancel


@trips.handler()
async def book(ctx: Context, trip: dict[str, str]) -> dict[str, str]:
    traveller = trip["traveller"]
    undo: list[Callable[[], Awaitable[None]]] = []
    try:
        flight = await ctx.run_typed("book flight", reserve, kind="flight", traveller=traveller)
        undo.append(lambda: ctx.run_typed("release flight", release, booking=flight))
        hotel = await ctx.run_typed("book hotel", reserve, kind="hotel", traveller=traveller)
        undo.append(lambda: ctx.run_typed("release hotel", release, booking=hotel))
        payment = await ctx.service_call(charge, {"card": trip["card"], "for": traveller})
        return {"flight": flight, "hotel": hotel, "payment": payment}
    except TerminalError:
        for step in reversed(undo):
            await step()
        raise
