"""The inputs of transcript messages: one per role, and the @oneOf that holds one of them."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from resolvers.inputs import (
    CONTENT_MAX,
    NAME_MAX,
    Content,
    FreeForm,
    IdempotencyKey,
    Input,
    Name,
    Reference,
    Seconds,
)

MESSAGES_MAX = 100
"""The most messages one call appends (or creates a session with)."""
TOOL_CALLS_MAX = 128

AT_MOST_CONTENT = f"At most {CONTENT_MAX:,} characters."
AT_MOST_NAME = f"At most {NAME_MAX} characters."
FREE_FORM = "Free-form data."


class ToolCallFunctionInput(Input):
    """A tool call's function."""

    name: Name = Field(description=AT_MOST_NAME)
    arguments: str = Field(description="The arguments, a JSON-encoded string.")

    @field_validator("arguments")
    @classmethod
    def _json_arguments(cls, value: str) -> str:
        try:
            json.loads(value)
        except ValueError:
            raise ValueError("must be a JSON-encoded string") from None
        return value


class ToolCallInput(Input):
    """A tool call made by the assistant."""

    id: Reference = Field(description="The call's id.")
    type: Literal["function"] = Field(default="function", description='"function".')
    function: ToolCallFunctionInput = Field(description="The function called.")


def _needs_text(content: str | None, message: str | None) -> None:
    # System and user messages come as chat messages (`content`) or call-transcript records
    # (`message` with times); one of the two texts is required.
    if content is None and message is None:
        raise ValueError("needs content or message")


class SystemMessageInput(Input):
    """A system message: `content`, or a call-transcript `message`."""

    content: Content | None = Field(default=None, description=AT_MOST_CONTENT)
    message: Content | None = Field(default=None, description="Call-transcript text.")
    time: Seconds | None = Field(default=None, description="Call-transcript timestamp.")
    seconds_from_start: Seconds | None = Field(default=None, description="Seconds into the call.")
    metadata: FreeForm | None = Field(default=None, description=FREE_FORM)

    @model_validator(mode="after")
    def _has_text(self) -> Self:
        _needs_text(self.content, self.message)
        return self


class UserMessageInput(Input):
    """A user message: `content`, or a call-transcript `message`."""

    content: Content | None = Field(default=None, description=AT_MOST_CONTENT)
    message: Content | None = Field(default=None, description="Call-transcript text.")
    time: Seconds | None = Field(default=None, description="Start timestamp.")
    end_time: Seconds | None = Field(default=None, description="End timestamp.")
    seconds_from_start: Seconds | None = Field(default=None, description="Seconds into the call.")
    duration: Seconds | None = Field(default=None, description="Length in seconds.")
    metadata: FreeForm | None = Field(default=None, description=FREE_FORM)

    @model_validator(mode="after")
    def _has_text(self) -> Self:
        _needs_text(self.content, self.message)
        return self


class AssistantMessageInput(Input):
    """An assistant message."""

    content: Content | None = Field(default=None, description=AT_MOST_CONTENT)
    refusal: Content | None = Field(default=None, description=AT_MOST_CONTENT)
    tool_calls: Annotated[list[ToolCallInput], Field(max_length=TOOL_CALLS_MAX)] | None = Field(
        default=None, description="Tools called."
    )
    name: Name | None = Field(default=None, description=AT_MOST_NAME)
    metadata: FreeForm | None = Field(default=None, description=FREE_FORM)


class ToolMessageInput(Input):
    """A tool's result."""

    content: Content = Field(description=f"The result, at most {CONTENT_MAX:,} characters.")
    tool_call_id: Reference = Field(description="The tool call answered.")
    name: Name | None = Field(default=None, description=AT_MOST_NAME)
    metadata: FreeForm | None = Field(default=None, description=FREE_FORM)


class DeveloperMessageInput(Input):
    """A developer message."""

    content: Content = Field(description=AT_MOST_CONTENT)
    name: Name | None = Field(default=None, description=AT_MOST_NAME)
    metadata: FreeForm | None = Field(default=None, description=FREE_FORM)


class MessageInput(Input):
    """One message; set exactly one role."""

    # Exactly one variant is set: GraphQL's @oneOf has already checked that.
    system: SystemMessageInput | None = Field(default=None, description="A system message.")
    user: UserMessageInput | None = Field(default=None, description="A user message.")
    assistant: AssistantMessageInput | None = Field(
        default=None, description="An assistant message."
    )
    tool: ToolMessageInput | None = Field(default=None, description="A tool result.")
    developer: DeveloperMessageInput | None = Field(
        default=None, description="A developer message."
    )

    def role_and_fields(self) -> tuple[str, dict[str, Any]]:
        """The role and the variant's fields, keyed as stored (snake_case)."""
        for role in ("system", "user", "assistant", "tool", "developer"):
            variant: Input | None = getattr(self, role)
            if variant is not None:
                return role, variant.model_dump(exclude_none=True)
        raise ValueError("a message needs exactly one role")


Messages = Annotated[list[MessageInput], Field(max_length=MESSAGES_MAX)]


class AddMessagesRequest(Input):
    """The arguments of `addMessages` (but the session id)."""

    messages: Annotated[list[MessageInput], Field(min_length=1, max_length=MESSAGES_MAX)]
    idempotency_key: IdempotencyKey | None = None
