"""The customer a session is with."""

from __future__ import annotations

from typing import Any

import strawberry

from resolvers import session_inputs as inputs
from schema.input_types import graphql_input
from schema.scalars import JSON
from schema.stored import from_stored


@strawberry.type(description="The customer of a session.")
class Customer:
    number: str | None = strawberry.field(description="The customer's phone number.")
    number_e164_check_enabled: bool = strawberry.field(
        description="Whether the number must be in E.164 format."
    )
    extension: str | None = strawberry.field(description="The phone extension to dial.")
    sip_uri: str | None = strawberry.field(description="The customer's SIP URI.")
    name: str | None = strawberry.field(description="The customer's name.")
    email: str | None = strawberry.field(description="The customer's email address.")
    external_id: str | None = strawberry.field(
        description="The customer's id in the client's own system."
    )
    assistant_overrides: JSON | None = strawberry.field(
        description="Assistant settings that apply to this customer only."
    )

    @classmethod
    def from_stored(cls, data: dict[str, Any] | None) -> Customer | None:
        if data is None:
            return None
        return from_stored(
            cls, data, number_e164_check_enabled=data.get("numberE164CheckEnabled", True)
        )


@graphql_input(inputs.CustomerInput)
class CustomerInput:
    pass
