"""The input of a session's Twilio phone number: its server, retry plan and fallback
destination, and the split of its write-only secrets from what reads may show."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from resolvers.inputs import (
    E164,
    HTTP_URL,
    SERVER_HEADERS,
    SERVER_HEADERS_SECRET,
    TWILIO_SECRETS,
    FreeForm,
    Input,
    Name,
    PhoneNumber,
    Reference,
    ReferenceId,
    Said,
    SipUri,
    StringMap,
    check_number,
)

HOOKS_MAX = 20


class BackoffPlanInput(Input):
    """Retry plan for the server URL."""

    type: Literal["fixed", "exponential"] = Field(description="Fixed or exponential.")
    max_retries: Annotated[int, Field(ge=0, le=10)] = Field(description="0 to 10 retries.")
    base_delay_seconds: Annotated[float, Field(ge=0, le=10)] = Field(
        description="First delay, 0 to 10 seconds."
    )


class ServerInput(Input):
    """The server that receives the phone number's events."""

    url: Annotated[str, StringConstraints(pattern=HTTP_URL.pattern, max_length=2048)] = Field(
        description="An http(s) URL."
    )
    timeout_seconds: Annotated[float, Field(ge=1, le=300)] | None = Field(
        default=None, description="1 to 300 seconds."
    )
    headers: StringMap | None = Field(
        default=None, description="Request headers, an object of strings. Write-only."
    )
    backoff_plan: BackoffPlanInput | None = Field(default=None, description="Retry plan.")


class NumberTransferDestinationInput(Input):
    """Transfer to a phone number."""

    number: PhoneNumber = Field(description="3 to 40 characters; E.164 unless unchecked.")
    number_e164_check_enabled: bool = Field(
        default=True, description="Whether to require E.164 (default true)."
    )
    extension: Annotated[str, StringConstraints(min_length=1, max_length=10)] | None = Field(
        default=None, description="1 to 10 characters."
    )
    caller_id: Name | None = Field(default=None, description="At most 40 characters.")
    message: Said | None = Field(default=None, description="Said before the transfer.")
    description: Said | None = Field(default=None, description="What it is for.")

    @model_validator(mode="after")
    def _number_format(self) -> Self:
        check_number(self.number, self.number_e164_check_enabled)
        return self


class SipTransferDestinationInput(Input):
    """Transfer to a SIP URI."""

    sip_uri: SipUri = Field(description="The SIP URI (sip:...).")
    message: Said | None = Field(default=None, description="Said before the transfer.")
    description: Said | None = Field(default=None, description="What it is for.")
    sip_headers: FreeForm | None = Field(default=None, description="SIP headers.")


class TransferDestinationInput(Input):
    """Where calls go when they cannot be handled: one of."""

    number: NumberTransferDestinationInput | None = Field(
        default=None, description="A phone number."
    )
    sip: SipTransferDestinationInput | None = Field(default=None, description="A SIP URI.")


class PhoneNumberInput(Input):
    """A Twilio phone number to import with the session."""

    twilio_phone_number: Annotated[str, StringConstraints(pattern=E164.pattern)] = Field(
        description="The number, in E.164."
    )
    twilio_account_sid: Reference = Field(description="The Twilio account SID.")
    twilio_auth_token: Reference | None = Field(
        default=None, description="Twilio auth token. Write-only."
    )
    twilio_api_key: Reference | None = Field(
        default=None, description="Twilio API key. Write-only."
    )
    twilio_api_secret: Reference | None = Field(
        default=None, description="Twilio API secret. Write-only."
    )
    name: Name | None = Field(default=None, description="At most 40 characters.")
    assistant_id: ReferenceId | None = Field(default=None, description="The assistant answering.")
    squad_id: ReferenceId | None = Field(default=None, description="The squad answering.")
    workflow_id: ReferenceId | None = Field(default=None, description="The workflow answering.")
    sms_enabled: bool = Field(default=True, description="Default true.")
    server: ServerInput | None = Field(default=None, description="Event server.")
    fallback_destination: TransferDestinationInput | None = Field(
        default=None, description="Where calls go when they cannot be handled."
    )
    hooks: Annotated[list[FreeForm], Field(max_length=HOOKS_MAX)] | None = Field(
        default=None, description="Hooks on call events."
    )

    def public_and_secrets(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split into what reads may show and the write-only secrets (with server headers)."""
        public = self.stored()
        secrets = {name: public.pop(name) for name in TWILIO_SECRETS if name in public}
        server = public.get("server")
        if server is not None and SERVER_HEADERS in server:
            secrets[SERVER_HEADERS_SECRET] = server.pop(SERVER_HEADERS)
        fallback = public.pop("fallbackDestination", None)
        if fallback is not None:
            kind, destination = next(iter(fallback.items()))
            public["fallbackDestination"] = {"type": kind, **destination}
        public["secretsSet"] = sorted(secrets)
        return public, secrets
