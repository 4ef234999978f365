"""The inputs of sessions: creating and changing one (with its assistant and customer), and
filtering and ordering a list of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from resolvers.inputs import (
    ANY_MAX,
    EMAIL,
    HTTP_URL,
    NAME_MAX,
    Content,
    FreeForm,
    Id,
    IdempotencyKey,
    Input,
    Name,
    PhoneNumber,
    ReferenceId,
    Said,
    SipUri,
    check_number,
)
from resolvers.message_inputs import MESSAGES_MAX, Messages
from resolvers.phone_number_inputs import PhoneNumberInput
from storage.records import SessionOrderField, SessionStatusValue

EXPIRATION_MIN = 60
EXPIRATION_MAX = 2_592_000
EXPIRATION_DEFAULT = 86_400

Expiration = Annotated[int, Field(ge=EXPIRATION_MIN, le=EXPIRATION_MAX)]

CLIENT_MESSAGES = Literal[
    "conversation-update", "function-call", "function-call-result", "hang",
    "language-changed", "metadata", "model-output", "speech-update", "status-update",
    "transcript", "tool-calls", "tool-calls-result", "tool.completed", "transfer-update",
    "user-interrupted", "voice-input", "workflow.node.started",
]  # fmt: skip
SERVER_MESSAGES = Literal[
    "conversation-update", "end-of-call-report", "function-call", "hang", "language-changed",
    "language-change-detected", "model-output", "phone-call-control", "speech-update",
    "status-update", "transcript", 'transcript[transcriptType="final"]', "tool-calls",
    "transfer-destination-request", "transfer-update", "user-interrupted", "voice-input",
]  # fmt: skip
FIRST_MESSAGE_MODES = Literal[
    "assistant-speaks-first",
    "assistant-speaks-first-with-model-generated-message",
    "assistant-waits-for-user",
]


class CustomerInput(Input):
    """The customer of a session; every field is optional."""

    number: PhoneNumber | None = Field(
        default=None,
        description="Phone number, 3 to 40 characters; E.164 (+14155550123) unless "
        "numberE164CheckEnabled is false.",
    )
    number_e164_check_enabled: bool = Field(
        default=True, description="Whether to require E.164 (default true)."
    )
    extension: Annotated[str, StringConstraints(max_length=10)] | None = Field(
        default=None, description="Extension, at most 10 characters."
    )
    sip_uri: SipUri | None = Field(default=None, description="SIP URI (sip:...).")
    name: Name | None = Field(default=None, description=f"Name, at most {NAME_MAX} characters.")
    email: Name | None = Field(
        default=None, description=f"Email address, at most {NAME_MAX} characters."
    )
    external_id: Name | None = Field(
        default=None, description=f"Id in the client's system, at most {NAME_MAX} characters."
    )
    assistant_overrides: FreeForm | None = Field(
        default=None, description="Assistant settings for this customer only."
    )

    @field_validator("email")
    @classmethod
    def _email_format(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.match(value):
            raise ValueError("must be an email address")
        return value

    @model_validator(mode="after")
    def _number_format(self) -> Self:
        check_number(self.number, self.number_e164_check_enabled)
        return self


def _provider_config(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and not isinstance(value.get("provider"), str):
        raise ValueError('must be an object with a "provider" string')
    return value


class AssistantInput(Input):
    """An assistant configuration; every field is optional."""

    name: Name | None = None
    first_message: Content | None = None
    first_message_mode: FIRST_MESSAGE_MODES | None = None
    max_duration_seconds: Annotated[int, Field(ge=10, le=43_200)] | None = None
    background_sound: str | None = None
    voicemail_message: Said | None = None
    end_call_message: Said | None = None
    end_call_phrases: (
        list[Annotated[str, StringConstraints(min_length=2, max_length=140)]] | None
    ) = None
    client_messages: list[CLIENT_MESSAGES] | None = None
    server_messages: list[SERVER_MESSAGES] | None = None
    metadata: FreeForm | None = None
    model: FreeForm | None = Field(
        default=None,
        description='The model, an object with a "provider" string: {"provider": "openai", '
        '"model": "gpt-4o"}.',
    )
    voice: FreeForm | None = Field(
        default=None,
        description='The voice, an object with a "provider" string: {"provider": "11labs", '
        '"voiceId": "..."}.',
    )
    transcriber: FreeForm | None = Field(
        default=None, description='The transcriber, an object with a "provider" string.'
    )
    config: FreeForm | None = Field(
        default=None,
        description="Any further settings of the Vapi assistant format (plans, hooks, server, "
        "...), stored as given. Names of the typed fields above are not allowed here.",
    )

    _check_providers = field_validator("model", "voice", "transcriber")(_provider_config)

    @field_validator("background_sound")
    @classmethod
    def _sound(cls, value: str | None) -> str | None:
        if value is not None and value not in ("off", "office") and not HTTP_URL.match(value):
            raise ValueError('must be "off", "office" or an http(s) URL')
        return value

    @field_validator("config")
    @classmethod
    def _no_overlap(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        typed = {to_camel(name) for name in cls.model_fields} - {"config"}
        overlap = sorted(typed & set(value or {}))
        if overlap:
            raise ValueError(f"repeats typed fields {overlap}; set them directly instead")
        return value

    def stored(self) -> dict[str, Any]:
        typed = super().stored()
        return {**typed.pop("config", {}), **typed}


class CreateSessionInput(Input):
    """A new session; every field is optional."""

    name: Name | None = Field(default=None, description=f"At most {NAME_MAX} characters.")
    status: SessionStatusValue = Field(default="active", description="ACTIVE by default.")
    expiration_seconds: Expiration = Field(
        default=EXPIRATION_DEFAULT,
        description=f"{EXPIRATION_MIN} to {EXPIRATION_MAX:,}; {EXPIRATION_DEFAULT:,} (a day) "
        "by default.",
    )
    assistant_id: ReferenceId | None = Field(
        default=None, description="An assistant kept elsewhere."
    )
    assistant: AssistantInput | None = Field(
        default=None, description="An assistant configuration."
    )
    customer: CustomerInput | None = Field(default=None, description="The customer.")
    phone_number_id: ReferenceId | None = Field(
        default=None, description="A phone number kept elsewhere."
    )
    phone_number: PhoneNumberInput | None = Field(
        default=None, description="A Twilio phone number."
    )
    messages: Messages = Field(
        default=[], description=f"Initial messages (at most {MESSAGES_MAX}), seq 1..n."
    )


class CreateSessionRequest(Input):
    """The arguments of `createSession`."""

    input: CreateSessionInput
    idempotency_key: IdempotencyKey | None = None


class UpdateSessionInput(Input):
    """Changes to a session; fields left out stay as they are."""

    name: Name | None = Field(default=None, description="A new name; null clears it.")
    status: SessionStatusValue = Field(default="active", description="A new status.")
    expiration_seconds: Expiration = Field(
        default=EXPIRATION_DEFAULT,
        description=f"A new lifetime ({EXPIRATION_MIN} to {EXPIRATION_MAX:,}), counted from "
        "createdAt.",
    )


class DateTimeFilter(Input):
    """Bounds on a date and time; every bound given must hold."""

    gt: datetime | None = Field(default=None, description="After.")
    gte: datetime | None = Field(default=None, description="At or after.")
    lt: datetime | None = Field(default=None, description="Before.")
    lte: datetime | None = Field(default=None, description="At or before.")


class SessionFilter(Input):
    """Which sessions to list; every filter given must match."""

    # The `...Any` lists are counted by `resolvers.sessions.session_query`, whose error says
    # how many values were sent; a length constraint here would say less.
    status: SessionStatusValue | None = Field(
        default=None, description="ACTIVE, or COMPLETED (expired included)."
    )
    name: str | None = Field(default=None, description="Exact name.")
    assistant_id: Id | None = Field(default=None, description="This assistant id.")
    assistant_id_any: list[Id] | None = Field(
        default=None, description=f"Any of these assistant ids (at most {ANY_MAX})."
    )
    phone_number_id: Id | None = Field(default=None, description="This phone number id.")
    phone_number_id_any: list[Id] | None = Field(
        default=None, description=f"Any of these phone number ids (at most {ANY_MAX})."
    )
    id_any: list[Id] | None = Field(
        default=None, description=f"Any of these session ids (at most {ANY_MAX})."
    )
    customer_number: str | None = Field(default=None, description="This customer phone number.")
    customer_number_any: list[str] | None = Field(
        default=None, description=f"Any of these customer numbers (at most {ANY_MAX})."
    )
    created_at: DateTimeFilter | None = Field(
        default=None, description="Bounds on the creation time."
    )
    updated_at: DateTimeFilter | None = Field(
        default=None, description="Bounds on the last change."
    )


class SessionOrder(Input):
    """The order of a session list; ties are broken by id."""

    field: SessionOrderField = Field(default="created_at", description="The time to order by.")
    direction: Literal["asc", "desc"] = Field(
        default="desc", description="Newest first by default."
    )
