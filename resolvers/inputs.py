"""Input validation at the edge: the base of every input model, and the limits they share.

Each input is declared once, as a pydantic model: its docstring and field descriptions are the
GraphQL type's (schema/input_types.py derives the Strawberry input from it). Inputs arrive as
plain dicts keyed by their GraphQL (camelCase) names, so a failure names the field exactly as
the client wrote it.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

T = TypeVar("T")

MAX_JSON_DEPTH = 32
"""How deeply free-form JSON may nest; MongoDB refuses documents nested past 100 levels."""
NAME_MAX = 40
CONTENT_MAX = 10_000
SAID_MAX = 1000
"""The longest text said on a call (a transfer message, a voicemail or end-call message)."""
REFERENCE_MAX = 100
ANY_MAX = 100
"""The most values a list filter (`idAny`, `assistantIdAny`, ...) takes."""

TWILIO_SECRETS = ("twilioAuthToken", "twilioApiKey", "twilioApiSecret")
"""The phone number's write-only Twilio credentials, by their input names."""
SERVER_HEADERS = "headers"
"""The server's write-only request headers, by their input name."""
SERVER_HEADERS_SECRET = "serverHeaders"
"""The name the server's headers are kept under among the phone number's secrets."""
SECRET_NAMES = (*TWILIO_SECRETS, SERVER_HEADERS)
"""Input field names whose values are write-only: no error message or log repeats them."""


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
StringMap = Annotated[dict[str, str], AfterValidator(_storable)]
"""A JSON object of strings stored as given."""


class GraphQLId:
    """Marks a string input as a GraphQL ID (schema/input_types.py reads the mark)."""


Id = Annotated[str, GraphQLId()]
"""A string that GraphQL types as ID."""
Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]
Content = Annotated[str, StringConstraints(max_length=CONTENT_MAX)]
Said = Annotated[str, StringConstraints(max_length=SAID_MAX)]
Reference = Annotated[str, StringConstraints(min_length=1, max_length=REFERENCE_MAX)]
ReferenceId = Annotated[Id, StringConstraints(min_length=1, max_length=REFERENCE_MAX)]
Seconds = Annotated[float, Field(ge=0)]
IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""A client's name for one write, which makes its retries safe (createSession, addMessages)."""
PhoneNumber = Annotated[str, StringConstraints(min_length=3, max_length=40)]
SipUri = Annotated[str, StringConstraints(pattern=r"^sips?:", max_length=256)]

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
LOOSE_NUMBER = re.compile(r"^\+?[a-zA-Z0-9]+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HTTP_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


class Input(BaseModel):
    """Base of every input model: camelCase names, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False
    )

    def stored(self) -> dict[str, Any]:
        """The value as stored: camelCase keys, absent fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


def check_number(number: str | None, e164: bool) -> None:
    """Raise a validation error naming `number` unless it has the format asked for: E.164, or
    letters and digits. The check reads two fields, so models run it once both are valid."""
    if number is None:
        return
    if e164 and not E164.match(number):
        reason = "must be an E.164 number such as +14155550123"
    elif not e164 and not LOOSE_NUMBER.match(number):
        reason = "may hold only letters and digits, with an optional leading +"
    else:
        return
    raise ValidationError.from_exception_data(
        "number",
        [
            InitErrorDetails(
                type=PydanticCustomError(
                    "value_error", "Value error, {reason}", {"reason": reason}
                ),
                loc=("number",),
                input=number,
            )
        ],
    )
