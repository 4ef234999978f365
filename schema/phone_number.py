"""The Twilio phone number of a session. Its credentials are write-only."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import strawberry

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
            twilio_auth_token_set="twilioAuthToken" in secrets,
            twilio_api_key_set="twilioApiKey" in secrets,
            twilio_api_secret_set="twilioApiSecret" in secrets,
            sms_enabled=data.get("smsEnabled", True),
            server=_server(data.get("server"), "serverHeaders" in secrets),
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


@strawberry.input(description="Retry plan for the server URL.")
class BackoffPlanInput:
    type: BackoffType = strawberry.field(description="Fixed or exponential.")
    max_retries: int = strawberry.field(description="0 to 10 retries.")
    base_delay_seconds: float = strawberry.field(description="First delay, 0 to 10 seconds.")


@strawberry.input(description="The server that receives the phone number's events.")
class ServerInput:
    url: str = strawberry.field(description="An http(s) URL.")
    timeout_seconds: float | None = strawberry.field(
        default=strawberry.UNSET, description="1 to 300 seconds."
    )
    headers: JSON | None = strawberry.field(
        default=strawberry.UNSET,
        description="Request headers, an object of strings. Write-only.",
    )
    backoff_plan: BackoffPlanInput | None = strawberry.field(
        default=strawberry.UNSET, description="Retry plan."
    )


@strawberry.input(description="Transfer to a phone number.")
class NumberTransferDestinationInput:
    number: str = strawberry.field(description="3 to 40 characters; E.164 unless unchecked.")
    number_e164_check_enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Whether to require E.164 (default true)."
    )
    extension: str | None = strawberry.field(
        default=strawberry.UNSET, description="1 to 10 characters."
    )
    caller_id: str | None = strawberry.field(
        default=strawberry.UNSET, description="At most 40 characters."
    )
    message: str | None = strawberry.field(
        default=strawberry.UNSET, description="Said before the transfer."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="What it is for."
    )


@strawberry.input(description="Transfer to a SIP URI.")
class SipTransferDestinationInput:
    sip_uri: str = strawberry.field(description="The SIP URI (sip:...).")
    message: str | None = strawberry.field(
        default=strawberry.UNSET, description="Said before the transfer."
    )
    description: str | None = strawberry.field(
        default=strawberry.UNSET, description="What it is for."
    )
    sip_headers: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="SIP headers."
    )


@strawberry.input(one_of=True, description="Where calls go when they cannot be handled: one of.")
class TransferDestinationInput:
    number: NumberTransferDestinationInput | None = strawberry.field(
        default=strawberry.UNSET, description="A phone number."
    )
    sip: SipTransferDestinationInput | None = strawberry.field(
        default=strawberry.UNSET, description="A SIP URI."
    )


@strawberry.input(description="A Twilio phone number to import with the session.")
class PhoneNumberInput:
    twilio_phone_number: str = strawberry.field(description="The number, in E.164.")
    twilio_account_sid: str = strawberry.field(description="The Twilio account SID.")
    twilio_auth_token: str | None = strawberry.field(
        default=strawberry.UNSET, description="Twilio auth token. Write-only."
    )
    twilio_api_key: str | None = strawberry.field(
        default=strawberry.UNSET, description="Twilio API key. Write-only."
    )
    twilio_api_secret: str | None = strawberry.field(
        default=strawberry.UNSET, description="Twilio API secret. Write-only."
    )
    name: str | None = strawberry.field(
        default=strawberry.UNSET, description="At most 40 characters."
    )
    assistant_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="The assistant answering."
    )
    squad_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="The squad answering."
    )
    workflow_id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET, description="The workflow answering."
    )
    sms_enabled: bool | None = strawberry.field(
        default=strawberry.UNSET, description="Default true."
    )
    server: ServerInput | None = strawberry.field(
        default=strawberry.UNSET, description="Event server."
    )
    fallback_destination: TransferDestinationInput | None = strawberry.field(
        default=strawberry.UNSET, description="Where calls go when they cannot be handled."
    )
    hooks: list[JSON] | None = strawberry.field(
        default=strawberry.UNSET, description="Hooks on call events."
    )
