"""The assistant configuration of a session."""

from __future__ import annotations

from enum import Enum
from typing import Any

import strawberry

from resolvers import session_inputs as inputs
from schema.input_types import graphql_input
from schema.scalars import JSON
from schema.stored import from_stored


@strawberry.enum(description="Who speaks first when a call starts.")
class FirstMessageMode(Enum):
    ASSISTANT_SPEAKS_FIRST = "assistant-speaks-first"
    ASSISTANT_SPEAKS_FIRST_WITH_MODEL_GENERATED_MESSAGE = (
        "assistant-speaks-first-with-model-generated-message"
    )
    ASSISTANT_WAITS_FOR_USER = "assistant-waits-for-user"


@strawberry.type(description="A provider-specific component: the model, voice or transcriber.")
class ProviderConfig:
    provider: str = strawberry.field(description="The provider, such as openai or 11labs.")
    name: str | None = strawberry.field(
        description="The main choice within the provider: the model name, voice id or "
        "transcription model."
    )
    config: JSON = strawberry.field(description="The whole component configuration.")

    @classmethod
    def from_stored(
        cls, data: dict[str, Any] | None, main_keys: tuple[str, ...]
    ) -> ProviderConfig | None:
        if data is None:
            return None
        name = next((data[key] for key in main_keys if isinstance(data.get(key), str)), None)
        return cls(provider=data["provider"], name=name, config=JSON(data))


@strawberry.type(description="How the session's assistant behaves, as configured by the client.")
class Assistant:
    name: str | None = strawberry.field(description="The assistant's name (at most 40 characters).")
    first_message: str | None = strawberry.field(description="What the assistant says first.")
    first_message_mode: FirstMessageMode | None = strawberry.field(description="Who speaks first.")
    max_duration_seconds: int | None = strawberry.field(
        description="The longest a call may last, 10 to 43,200 seconds."
    )
    background_sound: str | None = strawberry.field(
        description='Background sound: "off", "office" or the URL of a sound file.'
    )
    voicemail_message: str | None = strawberry.field(
        description="What to say when the call reaches voicemail."
    )
    end_call_message: str | None = strawberry.field(
        description="What to say before ending the call."
    )
    end_call_phrases: list[str] | None = strawberry.field(
        description="Phrases that end the call when the assistant says them."
    )
    client_messages: list[str] | None = strawberry.field(
        description="Events sent to the client SDKs."
    )
    server_messages: list[str] | None = strawberry.field(
        description="Events sent to the server URL."
    )
    metadata: JSON | None = strawberry.field(
        description="Free-form data stored with the assistant."
    )
    model: ProviderConfig | None = strawberry.field(description="The language model.")
    voice: ProviderConfig | None = strawberry.field(description="The voice.")
    transcriber: ProviderConfig | None = strawberry.field(description="The speech transcriber.")
    config: JSON = strawberry.field(
        description="The whole configuration as stored, in the Vapi assistant format."
    )

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> Assistant | None:
        if data is None:
            return None
        mode = data.get("firstMessageMode")
        return from_stored(
            cls,
            data,
            first_message_mode=FirstMessageMode(mode) if mode else None,
            model=ProviderConfig.from_stored(data.get("model"), ("model",)),
            voice=ProviderConfig.from_stored(data.get("voice"), ("voiceId", "model")),
            transcriber=ProviderConfig.from_stored(data.get("transcriber"), ("model",)),
            config=data,
        )


@graphql_input(inputs.AssistantInput, first_message_mode=FirstMessageMode)
class AssistantInput:
    pass
