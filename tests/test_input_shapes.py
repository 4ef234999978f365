"""Each GraphQL input and the model that validates it agree: the same fields, the same
required ones, and every limit a description states is the limit the model enforces."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from annotated_types import GroupedMetadata
from graphql import GraphQLInputObjectType, GraphQLNonNull, build_schema
from pydantic import BaseModel, Field, StringConstraints
from pydantic.fields import FieldInfo

from resolvers.inputs import ANY_MAX
from resolvers.tokens import MAX_TOKEN_SESSIONS
from schema import create_schema
from schema.input_types import INPUT_MODELS

SDL = build_schema((Path(__file__).parent.parent / "schema.graphql").read_text())
INPUT_TYPES = {
    name: kind for name, kind in SDL.type_map.items() if isinstance(kind, GraphQLInputObjectType)
}
# Limits checked in code rather than by a constraint, so that the error can count the values
# sent (or the distinct ones): the constant the code uses is the limit.
CHECKED_IN_CODE = {
    ("AccessTokenInput", "sessionIds"): MAX_TOKEN_SESSIONS,
    ("SessionFilter", "assistantIdAny"): ANY_MAX,
    ("SessionFilter", "phoneNumberIdAny"): ANY_MAX,
    ("SessionFilter", "idAny"): ANY_MAX,
    ("SessionFilter", "customerNumberAny"): ANY_MAX,
}
# A number in prose: "2,592,000" or "40", but not E.164's 164, the digits of an example
# number (+14155550123) or the 1 of "seq 1..n".
NUMBER = re.compile(r"(?<!E\.)(?<![\d+,])(\d{1,3}(?:,\d{3})+|\d+)(?![\d,]*\.\.)\b")

create_schema()  # derives every input type, filling INPUT_MODELS


def stated_numbers(description: str | None) -> set[float]:
    """The numbers a description states."""
    return {float(text.replace(",", "")) for text in NUMBER.findall(description or "")}


def _limits_of(metadata: Any) -> set[float]:
    if isinstance(metadata, FieldInfo):
        return set().union(*(_limits_of(item) for item in metadata.metadata))
    if isinstance(metadata, GroupedMetadata) and not isinstance(metadata, StringConstraints):
        return set().union(*(_limits_of(item) for item in metadata))
    names = ("min_length", "max_length", "ge", "gt", "le", "lt")
    return {
        float(v) for name in names if isinstance(v := getattr(metadata, name, None), int | float)
    }


def _annotation_limits(annotation: Any) -> set[float]:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *marks = get_args(annotation)
        return _annotation_limits(base).union(*(_limits_of(mark) for mark in marks))
    if origin in (Union, types.UnionType, list):
        return set().union(*(_annotation_limits(arg) for arg in get_args(annotation)))
    return set()


def enforced_limits(model: type[BaseModel], name: str) -> set[float]:
    """Every number the model holds about a field: its constraints (on the field and on its
    items) and its default."""
    field = model.model_fields[name]
    limits = _annotation_limits(field.annotation).union(*(_limits_of(m) for m in field.metadata))
    default = field.get_default(call_default_factory=True)
    if isinstance(default, int | float) and not isinstance(default, bool):
        limits.add(float(default))
    return limits


def test_every_graphql_input_is_derived_from_a_model() -> None:
    assert set(INPUT_TYPES) == set(INPUT_MODELS)


@pytest.mark.parametrize("type_name", sorted(INPUT_TYPES))
def test_graphql_fields_are_the_models_fields_in_order(type_name: str) -> None:
    model = INPUT_MODELS[type_name]
    graphql_fields = list(INPUT_TYPES[type_name].fields)
    assert graphql_fields == [field.alias for field in model.model_fields.values()]


@pytest.mark.parametrize("type_name", sorted(INPUT_TYPES))
def test_required_in_graphql_exactly_when_required_by_the_model(type_name: str) -> None:
    model = INPUT_MODELS[type_name]
    graphql_required = {
        name
        for name, field in INPUT_TYPES[type_name].fields.items()
        if isinstance(field.type, GraphQLNonNull) and field.default is None
    }
    assert graphql_required == {f.alias for f in model.model_fields.values() if f.is_required()}


DESCRIBED_FIELDS = [
    (type_name, field_name)
    for type_name, kind in sorted(INPUT_TYPES.items())
    for field_name, field in kind.fields.items()
    if stated_numbers(field.description)
]


@pytest.mark.parametrize(("type_name", "field_name"), DESCRIBED_FIELDS)
def test_limits_in_descriptions_are_the_enforced_ones(type_name: str, field_name: str) -> None:
    description = INPUT_TYPES[type_name].fields[field_name].description
    model = INPUT_MODELS[type_name]
    name = next(n for n, f in model.model_fields.items() if f.alias == field_name)
    enforced = enforced_limits(model, name)
    if (type_name, field_name) in CHECKED_IN_CODE:
        enforced.add(float(CHECKED_IN_CODE[type_name, field_name]))
    assert stated_numbers(description) <= enforced, (description, enforced)


def test_the_limit_check_sees_limits_in_prose_and_in_constraints() -> None:
    """The check above cannot pass by finding nothing: it reads the numbers of typical
    descriptions, skips those that are not limits, and finds a model's constraints."""
    assert stated_numbers("60 to 2,592,000; 86,400 (a day) by default.") == {
        60.0,
        2_592_000.0,
        86_400.0,
    }
    assert stated_numbers("Phone number; E.164 (+14155550123). Seq 1..n, 11labs.") == set()

    class Limited(BaseModel):
        name: Annotated[str, StringConstraints(max_length=41)] | None = None
        count: Annotated[int, Field(ge=2, le=9)] = 5

    assert enforced_limits(Limited, "name") == {41.0}
    assert enforced_limits(Limited, "count") == {2.0, 5.0, 9.0}
    assert not stated_numbers("At most 40 characters.") <= enforced_limits(Limited, "name")
    assert len(DESCRIBED_FIELDS) > 20
