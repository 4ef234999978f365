"""Execution contexts: compiled plans for queries, and plain leaves answered directly.

`PlannedExecutionContext` (the served one) answers a query from the plan compiled once for
its document (`schema/plans.py`): the response dict is built directly, without graphql-core's
per-field machinery. Whatever the plan does not answer exactly as graphql-core would (an
error, a null in a non-null position, a value a scalar refuses, an unknown runtime type)
abandons it, and the operation runs the normal way from the start. Mutations, subscriptions
and documents the compiler does not support always run the normal way.

On the normal path, most fields of a read are leaves read straight off an object (`id`,
`seq`, `content`): Strawberry resolves them with `getattr` and no `Info`, yet graphql-core
still builds a path, a resolve info and a completion chain for each.
`LeafFirstExecutionContext` reads and serialises those leaves itself and hands the rest of
the selection (objects, lists, fields with arguments or resolvers) to graphql-core. A leaf
it cannot answer plainly (a null in a non-null position, a value its scalar or enum refuses,
a missing attribute) goes the normal way too, so errors and their paths are graphql-core's
own. tests/test_execution.py runs generated documents through both and compares the results.

Recorded risks (graphql-core is pinned `>=3.3,<3.4`; its executor's methods other than
`build` and `execute_operation` are marked private): the methods overridden here are
`Executor.execute_operation` (documented, public) and `Executor.execute_fields` (private);
the plans call `build_resolve_info` (private, overridden by Strawberry), `build_response`
(private) and the field collection of `graphql.execution.collect_fields` (a module with an
`__all__`, not re-exported by `graphql.execution`). tests/test_execution.py must stay green
on any upgrade.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    TypeNameMetaFieldDef,
    Undefined,
)
from graphql.pyutils import Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from resolvers.context import Context
from schema.plans import PLAN_EVENTS, PlanRun, plain_attribute, plan_for

Leaf = Callable[[Any], Any]
"""Reads one leaf off a source object: its serialised value, or `NOT_PLAIN`."""

NOT_PLAIN: Any = object()
"""What a `Leaf` returns for a value the normal path must complete (to raise its error)."""

_leaves: weakref.WeakKeyDictionary[GraphQLSchema, dict[tuple[str, str], Leaf | None]] = (
    weakref.WeakKeyDictionary()
)


def _attribute_leaf(name: str, serialize: Callable[[Any], Any], non_null: bool) -> Leaf:
    def leaf(source: Any) -> Any:
        value = getattr(source, name, NOT_PLAIN)
        if value is None:
            return NOT_PLAIN if non_null else None
        if value is NOT_PLAIN or value is Undefined or isinstance(value, Exception):
            return NOT_PLAIN
        try:
            serialized = serialize(value)
        except Exception:
            return NOT_PLAIN
        if serialized is None or serialized is Undefined:
            return NOT_PLAIN
        return serialized

    return leaf


def _leaf_of(parent: GraphQLObjectType, field: GraphQLField) -> Leaf | None:
    """How to read `field` of `parent` directly, or None when it needs the normal path."""
    if field is TypeNameMetaFieldDef:
        name = parent.name
        return lambda _source: name
    attribute = plain_attribute(field)
    if attribute is None:
        return None
    field_type = field.type
    non_null = isinstance(field_type, GraphQLNonNull)
    named = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
    if not isinstance(named, GraphQLScalarType | GraphQLEnumType):
        return None
    return _attribute_leaf(attribute, named.coerce_output_value, non_null)


class LeafFirstExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, answering plain leaves directly (see the module)."""

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: dict[str, Any],
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        known = _leaves.get(self.schema)
        if known is None:
            known = _leaves.setdefault(self.schema, {})
        parent_name = parent_type.name
        answered: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for response_name, field_details_list in grouped_field_set.items():
            field_name = field_details_list[0].node.name.value
            key = (parent_name, field_name)
            try:
                leaf = known[key]
            except KeyError:
                field = self.schema.get_field(parent_type, field_name)
                leaf = known[key] = _leaf_of(parent_type, field) if field else None
            if leaf is not None:
                value = leaf(source_value)
                if value is not NOT_PLAIN:
                    answered[response_name] = value
                    continue
            rest[response_name] = field_details_list
        if not rest:
            return answered
        if not answered:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        others = super().execute_fields(parent_type, source_value, path, rest, position_context)
        if isinstance(others, dict):
            return _merged(grouped_field_set, answered, others)
        return _merged_later(grouped_field_set, answered, others)


def _merged(
    order: dict[str, Any], answered: dict[str, Any], others: dict[str, Any]
) -> dict[str, Any]:
    """The two parts of one object's result, in the order its fields were selected."""
    results: dict[str, Any] = {}
    for name in order:
        if name in answered:
            results[name] = answered[name]
        elif name in others:
            results[name] = others[name]
    return results


async def _merged_later(
    order: dict[str, Any], answered: dict[str, Any], others: Awaitable[dict[str, Any]]
) -> dict[str, Any]:
    return _merged(order, answered, await others)


class PlannedExecutionContext(LeafFirstExecutionContext):
    """The served execution context: a query whose document has a compiled plan
    (`schema/plans.py`) is answered by the plan; when the plan meets anything it does not
    answer exactly as graphql-core would, or the document has no plan, the operation runs
    the normal way from the start."""

    def execute_operation(self, serially: bool | None = None) -> Any:
        plan = None
        if (
            not serially
            and self.abort_signal is None
            and self.hooks is None
            and not (self.middleware_manager and self.middleware_manager.middlewares)
        ):
            plan = plan_for(self)
        if plan is None:
            return super().execute_operation(serially)
        try:
            data = PlanRun(self).select(plan.root, self.root_value, None)
        except Exception:
            return self._abandoned(serially)
        if not self.is_awaitable(data):
            PLAN_EVENTS["answered"] += 1
            return self.build_response(data)
        return self._settle(data, serially)

    async def _settle(self, data: Awaitable[dict[str, Any]], serially: bool | None) -> Any:
        try:
            settled = await data
        except Exception:
            result = self._abandoned(serially)
            return await result if self.is_awaitable(result) else result
        PLAN_EVENTS["answered"] += 1
        return self.build_response(settled)

    def _abandoned(self, serially: bool | None) -> Any:
        """The normal execution, as if the plan had not run. The request's DataLoaders are
        made anew: with the plan's reads cached, async fields finish in another order, and
        where a null propagates from a non-null field graphql-core cancels the siblings
        still running, so it would report another set of errors than a first run does."""
        PLAN_EVENTS["abandoned"] += 1
        if isinstance(self.context_value, Context):
            self.context_value.fresh_loaders()
        return super().execute_operation(serially)
