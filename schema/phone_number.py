"""The Twilio phone number of a session. Its credentials are write-only."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import strawberry
from pydantic.alias_generators import to_snake

from resolvers import phone_number_inputs as inputs
from resolvers.inputs import SERVER_HEADERS_SECRET, TWILIO_SECRETS
from schema.input_types import graphql_input
from schema.scalars import JSON
from schema.stored import from_stored


@strawberry.enum(description="How retries are spaced.")
class BackoffType(Enum):
    FIXED = "fixed"
    EXPONENTIAL = "exponential"


@strawberry.type(description="How requests to the server URL are retried.")
class BackoffPlan:
    type: BackoffType = strawberry.field(description="Fixed or exponential spacing.")
    max_retries: int = strawberry.field(description="At most this many retries (0 to 10).")
    base_delay_seconds: float = strawberry.field(description="The first delay (0 to 10 s).")


@strawberry.type(description="The server that receives the phone number's events.")
class Server:
    url: str = strawberry.field(description="Where events are sent.")
    timeout_seconds: float | None = strawberry.field(description="Request timeout, 1 to 300 s.")
    backoff_plan: BackoffPlan | None = strawberry.field(description="The retry plan.")
    headers_set: bool = strawberry.field(
        description="Whether request headers are configured; they are write-only."
    )


@strawberry.type(description="Transfer to a phone number when the call cannot be handled.")
class NumberTransferDestination:
    number: str = strawberry.field(description="The number to transfer to.")
    number_e164_check_enabled: bool = strawberry.field(description="Whether it must be E.164.")
    extension: str | None = strawberry.field(description="The extension to dial.")
    caller_id: str | None = strawberry.field(description="The caller id to present.")
    message: str | None = strawberry.field(description="What to say before transferring.")
    description: str | None = strawberry.field(description="What the destination is for.")


@strawberry.type(description="Transfer to a SIP URI when the call cannot be handled.")
class SipTransferDestination:
    sip_uri: str = strawberry.field(description="The SIP URI to transfer to.")
    message: str | None = strawberry.field(description="What to say before transferring.")
    description: str | None = strawberry.field(description="What the destination is for.")
    sip_headers: JSON | None = strawberry.field(description="SIP headers to send.")


TransferDestination = Annotated[
    NumberTransferDestination | SipTransferDestination,
    strawberry.union("TransferDestination", description="Where a call is transferred."),
]


@strawberry.type(
    description="A Twilio phone number. Its auth token, API key, API secret and server "
    "headers are write-only: reads only say whether each is set."
)
class PhoneNumber:
    twilio_phone_number: str = strawberry.field(description="The number, in E.164.")
    twilio_account_sid: str = strawberry.field(description="The Twilio account SID.")
    twilio_auth_token_set: bool = strawberry.field(description="Whether an auth token is stored.")
    twilio_api_key_set: bool = strawberry.field(description="Whether an API key is stored.")
    twilio_api_secret_set: bool = strawberry.field(description="Whether an API secret is stored.")
    name: str | None = strawberry.field(description="A name for the number.")
    assistant_id: strawberry.ID | None = strawberry.field(description="The assistant answering.")
    squad_id: strawberry.ID | None = strawberry.field(description="The squad answering.")
    workflow_id: strawberry.ID | None = strawberry.field(description="The workflow answering.")
    sms_enabled: bool = strawberry.field(description="Whether SMS is enabled.")
    server: Server | None = strawberry.field(description="Where the number's events go.")
    fallback_destination: TransferDestination | None = strawberry.field(
        description="Where calls go when they cannot be handled."
    )
    hooks: JSON | None = strawberry.field(description="Hooks run on call events.")

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> PhoneNumber | None:
        if data is None:
            return None
        secrets = set(data.get("secretsSet", ()))
        return from_stored(
            cls,
            data,
            **{f"{to_snake(name)}_set": name in secrets for name in TWILIO_SECRETS},
            sms_enabled=data.get("smsEnabled", True),
            server=_server(data.get("server"), SERVER_HEADERS_SECRET in secrets),
            fallback_destination=_destination(data.get("fallbackDestination")),
        )


def _server(data: dict[str, Any] | None, headers_set: bool) -> Server | None:
    if data is None:
        return None
    plan = data.get("backoffPlan")
    backoff = (
        None if plan is None else from_stored(BackoffPlan, plan, type=BackoffType(plan["type"]))
    )
    return from_stored(Server, data, backoff_plan=backoff, headers_set=headers_set)


def _destination(
    data: dict[str, Any] | None,
) -> NumberTransferDestination | SipTransferDestination | None:
    if data is None:
        return None
    if data["type"] == "sip":
        return from_stored(SipTransferDestination, data)
    return from_stored(
        NumberTransferDestination,
        data,
        number_e164_check_enabled=data.get("numberE164CheckEnabled", True),
    )


@graphql_input(inputs.BackoffPlanInput, type=BackoffType)
class BackoffPlanInput:
    pass


@graphql_input(inputs.ServerInput)
class ServerInput:
    pass


@graphql_input(inputs.NumberTransferDestinationInput)
class NumberTransferDestinationInput:
    pass


@graphql_input(inputs.SipTransferDestinationInput)
class SipTransferDestinationInput:
    pass


@graphql_input(inputs.TransferDestinationInput, one_of=True)
class TransferDestinationInput:
    pass


@graphql_input(inputs.PhoneNumberInput)
class PhoneNumberInput:
    pass
