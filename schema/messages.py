"""Transcript messages: one interface, a type per role, and their inputs."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.types.base import get_object_definition

from resolvers import message_inputs as inputs
from resolvers.pagination import message_cursor
from schema.input_types import graphql_input
from schema.node import Node
from schema.pagination import PageInfo
from schema.scalars import JSON
from storage import MessageRecord, Page


@strawberry.enum(description="Who a message is from.")
class MessageRole(Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    DEVELOPER = "developer"


@strawberry.interface(description="One message of a session's transcript.")
class Message(Node):
    id: strawberry.ID = strawberry.field(description="The message's unique id (a UUID).")
    session_id: strawberry.ID = strawberry.field(description="The session it belongs to.")
    seq: int = strawberry.field(
        description="Its place in the transcript: 1, 2, 3... with no gaps, in append order."
    )
    role: MessageRole = strawberry.field(description="Who the message is from.")
    content: str | None = strawberry.field(
        description="The text. For call-transcript records sent with `message`, that text."
    )
    created_at: datetime = strawberry.field(description="When it was appended.")
    metadata: JSON | None = strawberry.field(description="Free-form data sent with it.")

    @classmethod
    def resolve_type(cls, obj: Any, info: Any, abstract_type: Any) -> str:
        """The GraphQL type of a message: its class's (one of those below), looked up
        rather than searched for among the interface's implementations for every node."""
        return _TYPE_NAMES.get(type(obj)) or get_object_definition(obj, strict=True).name


@strawberry.type(description="A system prompt, or a system line of a call transcript.")
class SystemMessage(Message):
    message: str | None = strawberry.field(description="Call-transcript text, if sent so.")
    time: float | None = strawberry.field(description="Call-transcript timestamp.")
    seconds_from_start: float | None = strawberry.field(description="Seconds into the call.")


@strawberry.type(description="What the user said or typed.")
class UserMessage(Message):
    message: str | None = strawberry.field(description="Call-transcript text, if sent so.")
    time: float | None = strawberry.field(description="Call-transcript start timestamp.")
    end_time: float | None = strawberry.field(description="Call-transcript end timestamp.")
    seconds_from_start: float | None = strawberry.field(description="Seconds into the call.")
    duration: float | None = strawberry.field(description="How long the utterance lasted.")


@strawberry.type(description="A function the assistant asked to call.")
class ToolCallFunction:
    name: str = strawberry.field(description="The function's name.")
    arguments: str = strawberry.field(description="Its arguments, JSON-encoded.")


@strawberry.type(description="A tool call made by the assistant.")
class ToolCall:
    id: str = strawberry.field(description="The call's id, answered by a ToolMessage.")
    type: str = strawberry.field(description='The kind of tool; "function".')
    function: ToolCallFunction = strawberry.field(description="The function called.")


@strawberry.type(description="What the assistant said, refused or called.")
class AssistantMessage(Message):
    refusal: str | None = strawberry.field(description="The refusal text, if it refused.")
    tool_calls: list[ToolCall] | None = strawberry.field(description="Tools it called.")
    name: str | None = strawberry.field(description="The assistant's name.")


@strawberry.type(description="The result of a tool call.")
class ToolMessage(Message):
    tool_call_id: str = strawberry.field(description="The tool call this answers.")
    name: str | None = strawberry.field(description="The tool's name.")


@strawberry.type(description="Instructions from the developer.")
class DeveloperMessage(Message):
    name: str | None = strawberry.field(description="The author's name.")


def _tool_calls(calls: list[dict[str, Any]] | None) -> list[ToolCall] | None:
    if calls is None:
        return None
    return [
        ToolCall(id=c["id"], type=c["type"], function=ToolCallFunction(**c["function"]))
        for c in calls
    ]


_TYPE_NAMES: dict[type, str] = {
    kind: kind.__name__
    for kind in (SystemMessage, UserMessage, AssistantMessage, ToolMessage, DeveloperMessage)
}


_ROLES: dict[str, MessageRole] = {role.value: role for role in MessageRole}


def message_from_record(record: MessageRecord) -> Message:
    """The GraphQL message for a stored one."""
    data: dict[str, Any] = record  # type: ignore[assignment]
    get = data.get
    role = data["role"]
    common = {
        "id": data["id"],
        "session_id": data["session_id"],
        "seq": data["seq"],
        # A dictionary lookup, not the enum's call (10 messages a page); a stored value it
        # does not know still fails as the call would.
        "role": _ROLES.get(role) or MessageRole(role),
        "content": get("content", get("message")),
        "created_at": data["created_at"],
        "metadata": get("metadata"),
    }
    if role == "assistant":
        return AssistantMessage(
            **common, refusal=get("refusal"), tool_calls=_tool_calls(get("tool_calls")),
            name=get("name"),
        )  # fmt: skip
    if role == "tool":
        return ToolMessage(**common, tool_call_id=data["tool_call_id"], name=get("name"))
    if role == "developer":
        return DeveloperMessage(**common, name=get("name"))
    if role == "user":
        return UserMessage(
            **common, message=get("message"), time=get("time"), end_time=get("end_time"),
            seconds_from_start=get("seconds_from_start"), duration=get("duration"),
        )  # fmt: skip
    return SystemMessage(
        **common, message=get("message"), time=get("time"),
        seconds_from_start=get("seconds_from_start"),
    )  # fmt: skip


@strawberry.type(description="A message and its cursor.")
class MessageEdge:
    cursor: str = strawberry.field(description="Pass as after/before to page from here.")
    node: Message = strawberry.field(description="The message.")


def _edges(root: MessageConnection) -> list[MessageEdge]:
    return [MessageEdge(cursor=message_cursor(n.seq), node=n) for n in root.nodes]


def _page_info(root: MessageConnection) -> PageInfo:
    ends = [message_cursor(n.seq) for n in root.nodes[:1] + root.nodes[1:][-1:]]
    return PageInfo.of(ends, has_next=root.has_next, has_previous=root.has_previous)


@strawberry.type(description="A page of a transcript, in seq order.")
class MessageConnection:
    # Edges and page info are made only when asked for: most reads select `nodes` alone.
    edges: list[MessageEdge] = strawberry.field(
        resolver=_edges, description="The messages with their cursors."
    )
    nodes: list[Message] = strawberry.field(description="The messages alone.")
    page_info: PageInfo = strawberry.field(resolver=_page_info, description="Where this page sits.")
    total_count: int = strawberry.field(description="How many messages the session has.")
    has_next: strawberry.Private[bool]
    has_previous: strawberry.Private[bool]

    @classmethod
    def of(cls, page: Page[MessageRecord], total: int) -> MessageConnection:
        return cls(
            nodes=[message_from_record(m) for m in page.items],
            total_count=total,
            has_next=page.has_next,
            has_previous=page.has_previous,
        )


@graphql_input(inputs.ToolCallFunctionInput)
class ToolCallFunctionInput:
    pass


@graphql_input(inputs.ToolCallInput, defaults_shown=True)
class ToolCallInput:
    pass


@graphql_input(inputs.SystemMessageInput)
class SystemMessageInput:
    pass


@graphql_input(inputs.UserMessageInput)
class UserMessageInput:
    pass


@graphql_input(inputs.AssistantMessageInput)
class AssistantMessageInput:
    pass


@graphql_input(inputs.ToolMessageInput)
class ToolMessageInput:
    pass


@graphql_input(inputs.DeveloperMessageInput)
class DeveloperMessageInput:
    pass


@graphql_input(inputs.MessageInput, one_of=True)
class MessageInput:
    pass
