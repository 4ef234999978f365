"""Input validation at the edge: the reference's constraints as pydantic models.

Inputs arrive as plain dicts keyed by their GraphQL (camelCase) names, so a failure names the
field exactly as the client wrote it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

T = TypeVar("T")

MAX_JSON_DEPTH = 32
"""How deeply free-form JSON may nest; MongoDB refuses documents nested past 100 levels."""


def _storable(value: T) -> T:
    """`value`, free-form JSON, if MongoDB can store it as it was sent."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list) and depth > MAX_JSON_DEPTH:
            raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                if "\x00" in key:
                    raise ValueError(f"key {key!r} holds a NUL character")
                pending.append((child, depth + 1))
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -(2**63) <= item < 2**63:
                raise ValueError(f"{item} does not fit in a 64-bit integer")
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a finite number")
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(_storable)]
"""A JSON object stored as given."""

Name = Annotated[str, StringConstraints(max_length=40)]
Content = Annotated[str, StringConstraints(max_length=10_000)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Seconds = Annotated[float, Field(ge=0)]

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
LOOSE_NUMBER = re.compile(r"^\+?[a-zA-Z0-9]+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTTP_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)

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


class Input(BaseModel):
    """Base of every input model: camelCase names, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False
    )

    def stored(self) -> dict[str, Any]:
        """The value as stored: camelCase keys, absent fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


def _check_number(number: str | None, e164: bool) -> str | None:
    if number is None:
        return None
    if e164 and not E164.match(number):
        raise ValueError("must be an E.164 number such as +14155550123")
    if not e164 and not LOOSE_NUMBER.match(number):
        raise ValueError("may hold only letters and digits, with an optional leading +")
    return number


# Messages ---------------------------------------------------------------------------------


class ToolCallFunctionInput(Input):
    name: Name
    arguments: str

    @field_validator("arguments")
    @classmethod
    def _json_arguments(cls, value: str) -> str:
        try:
            json.loads(value)
        except ValueError:
            raise ValueError("must be a JSON-encoded string") from None
        return value


class ToolCallInput(Input):
    id: Reference
    type: Literal["function"] = "function"
    function: ToolCallFunctionInput


class TranscriptFields(Input):
    """System and user messages come as chat messages (`content`) or call-transcript
    records (`message` with times); one of the two texts is required."""

    content: Content | None = None
    message: Content | None = None
    time: Seconds | None = None
    seconds_from_start: Seconds | None = None
    metadata: FreeForm | None = None

    @model_validator(mode="after")
    def _has_text(self) -> Self:
        if self.content is None and self.message is None:
            raise ValueError("needs content or message")
        return self


class SystemMessageInput(TranscriptFields):
    pass


class UserMessageInput(TranscriptFields):
    end_time: Seconds | None = None
    duration: Seconds | None = None


class AssistantMessageInput(Input):
    content: Content | None = None
    refusal: Content | None = None
    tool_calls: Annotated[list[ToolCallInput], Field(max_length=128)] | None = None
    name: Name | None = None
    metadata: FreeForm | None = None


class ToolMessageInput(Input):
    content: Content
    tool_call_id: Reference
    name: Name | None = None
    metadata: FreeForm | None = None


class DeveloperMessageInput(Input):
    content: Content
    name: Name | None = None
    metadata: FreeForm | None = None


class MessageInput(Input):
    """Exactly one variant is set; GraphQL's @oneOf has already checked that."""

    system: SystemMessageInput | None = None
    user: UserMessageInput | None = None
    assistant: AssistantMessageInput | None = None
    tool: ToolMessageInput | None = None
    developer: DeveloperMessageInput | None = None

    def role_and_fields(self) -> tuple[str, dict[str, Any]]:
        """The role and the variant's fields, keyed as stored (snake_case)."""
        for role in ("system", "user", "assistant", "tool", "developer"):
            variant: Input | None = getattr(self, role)
            if variant is not None:
                return role, variant.model_dump(exclude_none=True)
        raise ValueError("a message needs exactly one role")


Messages = Annotated[list[MessageInput], Field(max_length=100)]


# Customer and phone number ----------------------------------------------------------------


class CustomerInput(Input):
    number_e164_check_enabled: bool = True
    number: Annotated[str, StringConstraints(min_length=3, max_length=40)] | None = None
    extension: Annotated[str, StringConstraints(max_length=10)] | None = None
    sip_uri: Annotated[str, StringConstraints(pattern=r"^sips?:", max_length=256)] | None = None
    name: Name | None = None
    email: Name | None = None
    external_id: Name | None = None
    assistant_overrides: FreeForm | None = None

    @field_validator("number")
    @classmethod
    def _number_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_number(value, info.data.get("number_e164_check_enabled", True))

    @field_validator("email")
    @classmethod
    def _email_format(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.match(value):
            raise ValueError("must be an email address")
        return value


class BackoffPlanInput(Input):
    type: Literal["fixed", "exponential"]
    max_retries: Annotated[int, Field(ge=0, le=10)]
    base_delay_seconds: Annotated[float, Field(ge=0, le=10)]


class ServerInput(Input):
    url: Annotated[str, StringConstraints(pattern=HTTP_URL.pattern, max_length=2048)]
    timeout_seconds: Annotated[float, Field(ge=1, le=300)] | None = None
    headers: Annotated[dict[str, str], AfterValidator(_storable)] | None = None
    backoff_plan: BackoffPlanInput | None = None


class NumberDestinationInput(Input):
    number_e164_check_enabled: bool = True
    number: Annotated[str, StringConstraints(min_length=3, max_length=40)]
    extension: Annotated[str, StringConstraints(min_length=1, max_length=10)] | None = None
    caller_id: Name | None = None
    message: Annotated[str, StringConstraints(max_length=1000)] | None = None
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None

    @field_validator("number")
    @classmethod
    def _number_format(cls, value: str, info: ValidationInfo) -> str | None:
        return _check_number(value, info.data.get("number_e164_check_enabled", True))


class SipDestinationInput(Input):
    sip_uri: Annotated[str, StringConstraints(pattern=r"^sips?:", max_length=256)]
    message: Annotated[str, StringConstraints(max_length=1000)] | None = None
    description: Annotated[str, StringConstraints(max_length=1000)] | None = None
    sip_headers: FreeForm | None = None


class FallbackDestinationInput(Input):
    number: NumberDestinationInput | None = None
    sip: SipDestinationInput | None = None


class PhoneNumberInput(Input):
    twilio_phone_number: Annotated[str, StringConstraints(pattern=E164.pattern)]
    twilio_account_sid: Reference
    twilio_auth_token: Reference | None = None
    twilio_api_key: Reference | None = None
    twilio_api_secret: Reference | None = None
    name: Name | None = None
    assistant_id: Reference | None = None
    squad_id: Reference | None = None
    workflow_id: Reference | None = None
    sms_enabled: bool = True
    server: ServerInput | None = None
    fallback_destination: FallbackDestinationInput | None = None
    hooks: Annotated[list[FreeForm], Field(max_length=20)] | None = None

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = (
        "twilioAuthToken",
        "twilioApiKey",
        "twilioApiSecret",
    )

    def public_and_secrets(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Split into what reads may show and the write-only secrets (with server headers)."""
        public = self.stored()
        secrets = {name: public.pop(name) for name in self.SECRET_FIELDS if name in public}
        server = public.get("server")
        if server is not None and "headers" in server:
            secrets["serverHeaders"] = server.pop("headers")
        fallback = public.pop("fallbackDestination", None)
        if fallback is not None:
            kind, destination = next(iter(fallback.items()))
            public["fallbackDestination"] = {"type": kind, **destination}
        public["secretsSet"] = sorted(secrets)
        return public, secrets


# Assistant --------------------------------------------------------------------------------


def _provider_config(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and not isinstance(value.get("provider"), str):
        raise ValueError('must be an object with a "provider" string')
    return value


class AssistantInput(Input):
    name: Name | None = None
    first_message: Content | None = None
    first_message_mode: FIRST_MESSAGE_MODES | None = None
    max_duration_seconds: Annotated[int, Field(ge=10, le=43_200)] | None = None
    background_sound: str | None = None
    voicemail_message: Annotated[str, StringConstraints(max_length=1000)] | None = None
    end_call_message: Annotated[str, StringConstraints(max_length=1000)] | None = None
    end_call_phrases: (
        list[Annotated[str, StringConstraints(min_length=2, max_length=140)]] | None
    ) = None
    client_messages: list[CLIENT_MESSAGES] | None = None
    server_messages: list[SERVER_MESSAGES] | None = None
    metadata: FreeForm | None = None
    model: FreeForm | None = None
    voice: FreeForm | None = None
    transcriber: FreeForm | None = None
    config: FreeForm | None = None

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


# Sessions ---------------------------------------------------------------------------------


IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A client's name for one write, which makes its retries safe (createSession, addMessages)."""


class CreateSessionInput(Input):
    name: Name | None = None
    status: Literal["active", "completed"] = "active"
    expiration_seconds: Annotated[int, Field(ge=60, le=2_592_000)] = 86_400
    assistant_id: Reference | None = None
    assistant: AssistantInput | None = None
    customer: CustomerInput | None = None
    phone_number_id: Reference | None = None
    phone_number: PhoneNumberInput | None = None
    messages: Messages = []


class CreateSessionRequest(Input):
    input: CreateSessionInput
    idempotency_key: IdempotencyKey | None = None


class UpdateSessionInput(Input):
    name: Name | None = None
    status: Literal["active", "completed"] = "active"
    expiration_seconds: Annotated[int, Field(ge=60, le=2_592_000)] = 86_400


class AddMessagesInput(Input):
    messages: Annotated[list[MessageInput], Field(min_length=1, max_length=100)]
    idempotency_key: IdempotencyKey | None = None
