# NOT verbatim: a port of restatedev/examples
# python/tutorials/tour-of-orchestration-python/app/types.py @ 2d429daae784
# https://github.com/restatedev/examples/blob/2d429daae784d20982691fb31431702b4ad30a6b/python/tutorials/tour-of-orchestration-python/app/types.py
# The upstream models are pydantic BaseModels (alias_generator=to_camel, populate_by_name=True).
# This project has no pydantic serde, so they are msgspec Structs here (a type both SDKs
# decode and encode: see the official examples/msgspec_greeter.py), with the same classes,
# field names, types and defaults. Not reproduced: the camelCase aliases. Pydantic accepts
# both spellings on input and, with the official SDK's model_dump_json(), writes snake_case,
# so snake_case in and out is what both SDKs share.
"""The tour's request and result types (msgspec port of the pydantic originals)."""

from __future__ import annotations

import msgspec


class PurchaseTicketRequest(msgspec.Struct):
    ticket_id: str
    concert_date: str
    price: float
    customer_email: str


class SubscriptionRequest(msgspec.Struct):
    user_id: str
    credit_card: str
    subscriptions: list[str]


class SubscriptionResult(msgspec.Struct):
    success: bool
    payment_ref: str


class PaymentRequest(msgspec.Struct):
    amount: int
    currency: str
    customer_id: str
    order_id: str


class PaymentResult(msgspec.Struct):
    success: bool
    transaction_id: str | None = None
    error_message: str | None = None


class ConfirmationRequest(msgspec.Struct):
    id: str
    result: PaymentResult
