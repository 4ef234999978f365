"""GraphQL input types derived from the pydantic input models, so each input is declared once.

The model (resolvers/*_inputs.py) gives the type's name, its description (the docstring), and each
field's name (its camelCase alias), type, description and default. What the model cannot say is
passed here: the GraphQL enum behind a `Literal`, whether the type is @oneOf, and whether
defaults show in the schema (otherwise an optional field is nullable and may be left out, and
the model supplies its default).

Strawberry's `strawberry.experimental.pydantic.input` does not fit: it turns every optional
field's default into `= null` (losing the difference between a field left out and one set to
null), has no @oneOf, and cannot map `Literal` or free-form dict fields.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin

import strawberry
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from strawberry.scalars import JSON

from resolvers.inputs import GraphQLId

C = TypeVar("C")

INPUT_MODELS: dict[str, type[BaseModel]] = {}
"""Every derived input type's GraphQL name and the model it was derived from."""
_DERIVED: dict[type[BaseModel], type] = {}
_PLAIN = (str, int, float, bool, datetime)


def graphql_input(
    model: type[BaseModel],
    *,
    one_of: bool = False,
    defaults_shown: bool = False,
    **enums: type[Enum],
) -> Callable[[type[C]], type[C]]:
    """A class decorator replacing the (empty) class with the Strawberry input type of
    `model`; `enums` names the GraphQL enum of each `Literal` field that has one."""

    unknown = sorted(set(enums) - set(model.model_fields))
    if unknown:
        raise TypeError(f"{model.__name__} has no fields {unknown}")

    def derive(cls: type[C]) -> type[C]:
        annotations: dict[str, Any] = {}
        namespace: dict[str, Any] = {"__module__": cls.__module__}
        for name, field in model.model_fields.items():
            kind = _graphql_type(
                Annotated[(field.annotation, *field.metadata)]
                if field.metadata
                else field.annotation,
                enums.get(name),
            )
            required = field.is_required()
            if not required and not defaults_shown:
                kind = kind | None
            annotations[name] = kind
            namespace[name] = strawberry.field(
                name=field.alias,
                description=field.description,
                default=_default(field, enums.get(name), required, defaults_shown),
            )
        namespace["__annotations__"] = annotations
        derived = strawberry.input(
            type(model.__name__, (), namespace),
            description=inspect.cleandoc(model.__doc__ or "") or None,
            one_of=one_of or None,
        )
        INPUT_MODELS[model.__name__] = model
        _DERIVED[model] = derived
        return cast("type[C]", derived)

    return derive


def _default(field: FieldInfo, enum: type[Enum] | None, required: bool, shown: bool) -> Any:
    if required:
        return dataclasses.MISSING
    if not shown:
        return strawberry.UNSET
    default = field.get_default(call_default_factory=True)
    return enum(default) if enum is not None and default is not None else default


def _graphql_type(annotation: Any, enum: type[Enum] | None) -> Any:
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *marks = get_args(annotation)
        if any(isinstance(mark, GraphQLId) for mark in marks):
            return strawberry.ID
        return _graphql_type(base, enum)
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"GraphQL inputs have no unions: {annotation!r}")
        inner = _graphql_type(members[0], enum)
        return inner | None if len(members) < len(get_args(annotation)) else inner
    if origin is Literal:
        if enum is None:
            return str
        if {member.value for member in enum} != set(get_args(annotation)):
            raise TypeError(f"the values of {enum.__name__} are not those of {annotation!r}")
        return enum
    if origin is list:
        return list[_graphql_type(get_args(annotation)[0], enum)]  # type: ignore[misc]
    if origin is dict:
        return JSON
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _DERIVED[annotation]
    if annotation in _PLAIN:
        return annotation
    raise TypeError(f"no GraphQL type for the input annotation {annotation!r}")
