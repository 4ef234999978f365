"""Compiled plans: a query's selection turned once into direct reads, resolver calls and
serialisers, which answer the happy path of later requests for the same document.

`compile_operation` walks an operation's selection with graphql-core's own field collection
(so fragments, type conditions and merged fields are collected exactly as in execution) and
records, per selected field, what produces its value: `__typename`, a plain attribute read,
or the field's resolver (its arguments coerced once when they are literals, per request when
they use variables); and how its value is completed: a scalar or enum's
`coerce_output_value`, a list, an object's sub-plan, or an abstract type's sub-plan per
possible concrete type. Documents it does not support (directives, introspection fields,
fields the schema lacks) compile to None, and that verdict is kept too.

`run_plan` builds the response dict directly, starting every resolver of a list's items
before awaiting any (so DataLoaders batch them as in graphql-core's execution). It answers
only the happy path: anything graphql-core would turn into an error or a null (an exception
raised or returned, a null in a non-null position, a value a scalar or enum refuses, a
runtime type the plan does not know, a failed `is_type_of`) raises `Abandoned`, and the
caller executes the operation the normal way from the start, so every error is
graphql-core's own.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from inspect import iscoroutine
from typing import Any, cast

from graphql import (
    FieldNode,
    GraphQLAbstractType,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SchemaMetaFieldDef,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
    Undefined,
    ValueNode,
    VariableNode,
    get_argument_values,
    is_abstract_type,
)
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetails, collect_fields, collect_subfields
from graphql.language import Node
from graphql.pyutils import Path, is_iterable
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

from schema.documents import PerOperation

CACHED_PLANS = 512
"""Operations whose plan (or whose verdict "not compiled") each schema keeps."""


PLAN_EVENTS: Counter[str] = Counter()
"""How often, in this process, an operation was "compiled" or "not compiled" (once per
document and schema), and a plan "answered" a request or was "abandoned" for the normal path."""


class Abandoned(Exception):
    """The plan met something only graphql-core's execution answers exactly."""


class Completion:
    """How a field's value becomes its part of the response."""

    __slots__ = (
        "abstract_type",
        "kind",
        "non_null",
        "object_type",
        "of",
        "serialize",
        "sub",
        "types",
    )

    LEAF, LIST, OBJECT, ABSTRACT = range(4)

    def __init__(self, kind: int, non_null: bool) -> None:
        self.kind = kind
        self.non_null = non_null
        self.serialize: Callable[[Any], Any] = _refuse
        """A scalar or enum's `coerce_output_value` (LEAF)."""
        self.of: Completion = self
        """The items' completion (LIST)."""
        self.object_type: GraphQLObjectType = _NO_TYPE
        self.sub: Selection = _NO_SELECTION
        """The object's selection (OBJECT)."""
        self.abstract_type: GraphQLAbstractType = _NO_TYPE
        self.types: dict[str, tuple[GraphQLObjectType, Selection]] = {}
        """Each possible concrete type's selection, by type name (ABSTRACT)."""


class FieldPlan:
    """One response key of a selection: how its value is produced and completed."""

    __slots__ = (
        "args",
        "attribute",
        "completion",
        "exact",
        "field",
        "key",
        "kind",
        "node",
        "nodes",
    )

    TYPENAME, LEAF, ATTRIBUTE, RESOLVER = range(4)

    def __init__(self, key: str, field: GraphQLField, nodes: list[FieldNode]) -> None:
        self.key = key
        self.field = field
        self.nodes = nodes
        self.node = nodes[0]
        self.kind = FieldPlan.RESOLVER
        self.attribute = ""
        """The attribute read in place of the resolver (LEAF, ATTRIBUTE)."""
        self.args: dict[str, Any] | None = None
        """The coerced arguments when they are literal scalars; None: coerced per request."""
        self.completion = Completion(Completion.LEAF, False)
        self.exact: type | None = None
        """For String, ID, Int and Boolean leaves: the Python type that their
        `coerce_output_value` returns unchanged (an int only within 32 bits)."""


class Selection:
    """The fields selected on one object type, in response order."""

    __slots__ = ("fields", "type")

    def __init__(self, type_: GraphQLObjectType) -> None:
        self.type = type_
        self.fields: list[FieldPlan] = []


_NO_TYPE: Any = GraphQLObjectType("NoType", {})
_NO_SELECTION = Selection(_NO_TYPE)


class Plan:
    """A compiled query operation: its root type's selection."""

    __slots__ = ("operation", "root")

    def __init__(self, operation: OperationDefinitionNode, root: Selection) -> None:
        self.operation = operation
        self.root = root


class NotCompiled(Exception):
    """The document uses something the compiler leaves to graphql-core."""


def _refuse(value: Any) -> Any:
    raise Abandoned


_plans: weakref.WeakKeyDictionary[GraphQLSchema, PerOperation[Plan | None]] = (
    weakref.WeakKeyDictionary()
)


def plan_for(executor: Executor[Any]) -> Plan | None:
    """The plan of the executor's operation (compiled on first use), or None when its
    document is not compiled: not a query, or using what the compiler does not support.
    Keyed by the operation node, which the parse cache returns for the same text."""
    operation = executor.operation
    if operation.operation is not OperationType.QUERY:
        return None
    known = _plans.get(executor.schema)
    if known is None:
        known = _plans.setdefault(executor.schema, PerOperation(CACHED_PLANS))
    return known.get(operation, None, lambda: _compiled(executor))


def _compiled(executor: Executor[Any]) -> Plan | None:
    try:
        plan: Plan | None = compile_operation(executor)
    except NotCompiled:
        plan = None
    PLAN_EVENTS["compiled" if plan else "not compiled"] += 1
    return plan


def compile_operation(executor: Executor[Any]) -> Plan:
    """The operation's plan; NotCompiled when it uses what plans do not answer."""
    operation = executor.operation
    if _has_directives(operation) or any(
        _has_directives(fragment) for fragment in executor.fragment_definitions.values()
    ):
        raise NotCompiled("directives")
    schema = executor.schema
    root_type = schema.get_root_type(OperationType.QUERY)
    if root_type is None:
        raise NotCompiled("no query type")
    grouped, _defers, _forbidden = collect_fields(
        schema, executor.fragments, executor.variable_values, root_type, operation
    )
    return Plan(operation, _selection(executor, root_type, grouped))


def _selection(
    executor: Executor[Any],
    parent: GraphQLObjectType,
    grouped: dict[str, list[FieldDetails]],
) -> Selection:
    selection = Selection(parent)
    for key, details in grouped.items():
        if any(detail.fragment_variable_values is not None for detail in details):
            raise NotCompiled("fragment arguments")
        nodes = [detail.node for detail in details]
        name = nodes[0].name.value
        field = executor.schema.get_field(parent, name)
        if field is None or field is SchemaMetaFieldDef or field is TypeMetaFieldDef:
            raise NotCompiled(f"field {parent.name}.{name}")
        plan = FieldPlan(key, field, nodes)
        selection.fields.append(plan)
        if field is TypeNameMetaFieldDef:
            plan.kind = FieldPlan.TYPENAME
            continue
        plan.completion = _completion(executor, field.type, details)
        attribute = plain_attribute(field)
        if attribute is not None:
            plan.attribute = attribute
            leaf = plan.completion.kind == Completion.LEAF
            plan.kind = FieldPlan.LEAF if leaf else FieldPlan.ATTRIBUTE
            plan.exact = _EXACT.get(_named(field.type)) if leaf else None
        elif not any(_uses_variables(argument.value) for argument in plan.node.arguments or ()):
            args = get_argument_values(field, plan.node, executor.variable_values)
            # Kept for every request only when no resolver could change them in place.
            if all(not isinstance(value, list | dict) for value in args.values()):
                plan.args = args
    return selection


def _completion(
    executor: Executor[Any], type_: GraphQLOutputType, details: list[FieldDetails]
) -> Completion:
    non_null = isinstance(type_, GraphQLNonNull)
    named = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(named, GraphQLList):
        completion = Completion(Completion.LIST, non_null)
        completion.of = _completion(executor, named.of_type, details)
        return completion
    if isinstance(named, GraphQLScalarType | GraphQLEnumType):
        completion = Completion(Completion.LEAF, non_null)
        completion.serialize = named.coerce_output_value
        return completion
    schema = executor.schema
    if isinstance(named, GraphQLObjectType):
        completion = Completion(Completion.OBJECT, non_null)
        completion.object_type = named
        completion.sub = _sub_selection(executor, named, details)
        return completion
    if is_abstract_type(named):
        completion = Completion(Completion.ABSTRACT, non_null)
        completion.abstract_type = named
        for possible in schema.get_possible_types(named):
            sub = _sub_selection(executor, possible, details)
            completion.types[possible.name] = (possible, sub)
        return completion
    raise NotCompiled(f"type {named}")


def _sub_selection(
    executor: Executor[Any], type_: GraphQLObjectType, details: list[FieldDetails]
) -> Selection:
    grouped, _defers, _forbidden = collect_subfields(
        executor.schema,
        executor.fragments,
        executor.variable_values,
        executor.operation,
        type_,
        details,
    )
    return _selection(executor, type_, grouped)


_EXACT: dict[Any, type] = {
    GraphQLString: str,
    GraphQLID: str,
    GraphQLInt: int,
    GraphQLBoolean: bool,
}
"""graphql-core's own scalars, and the type each serialises as itself."""
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


def _named(type_: GraphQLOutputType) -> Any:
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def plain_attribute(field: GraphQLField) -> str | None:
    """The attribute Strawberry's resolver would read for `field`, when that is all it does."""
    if field.args:
        return None
    definition = (field.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    if not isinstance(definition, StrawberryField) or not definition.is_basic_field:
        return None
    if definition.default_resolver is not getattr:
        return None
    return definition.python_name


def _uses_variables(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_uses_variables(item) for item in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_uses_variables(field.value) for field in value.fields)
    return False


def _has_directives(node: Node) -> bool:
    """Whether any directive appears in the node or below it (skip, include, defer...)."""
    if getattr(node, "directives", None):
        return True
    selection_set = getattr(node, "selection_set", None)
    if selection_set is None:
        return False
    return any(_has_directives(selection) for selection in selection_set.selections)


# Running a plan ---------------------------------------------------------------------------


class PlanRun:
    """One request's run of a plan on its executor (context, variables, resolve info)."""

    __slots__ = ("executor", "is_awaitable", "variables")

    def __init__(self, executor: Executor[Any]) -> None:
        self.executor = executor
        self.is_awaitable = executor.is_awaitable
        self.variables = executor.variable_values

    def select(self, selection: Selection, source: Any, path: Path | None) -> Any:
        """The object's response dict, or an awaitable of it when a resolver awaits."""
        results: dict[str, Any] = {}
        pending: list[str] = []
        try:
            for plan in selection.fields:
                kind = plan.kind
                if kind == FieldPlan.LEAF:
                    results[plan.key] = _leaf(plan, source)
                elif kind == FieldPlan.TYPENAME:
                    results[plan.key] = selection.type.name
                else:
                    results[plan.key] = completed = self.field(plan, selection, source, path)
                    if self.is_awaitable(completed):
                        pending.append(plan.key)
        except Exception as error:
            if not pending:
                raise
            return _failed([results[key] for key in pending], error)
        if not pending:
            return results
        return _settled(results, pending)

    def field(self, plan: FieldPlan, selection: Selection, source: Any, path: Path | None) -> Any:
        parent = selection.type
        field_path = Path(path, plan.key, parent.name)
        info = self.executor.build_resolve_info(plan.field, plan.nodes, parent, field_path)
        if plan.kind == FieldPlan.ATTRIBUTE:
            value = getattr(source, plan.attribute, Undefined)
            if value is Undefined:
                raise Abandoned
        else:
            args = plan.args
            if args is None:
                args = get_argument_values(plan.field, plan.node, self.variables)
            resolve = plan.field.resolve or self.executor.field_resolver
            value = resolve(source, info, **args)
            if self.is_awaitable(value):
                return self.complete_later(plan.completion, value, info, field_path)
        return self.complete(plan.completion, value, info, field_path)

    async def complete_later(
        self,
        completion: Completion,
        value: Awaitable[Any],
        info: GraphQLResolveInfo[Any],
        path: Path,
    ) -> Any:
        completed = self.complete(completion, await value, info, path)
        if self.is_awaitable(completed):
            return await completed
        return completed

    def complete(
        self, completion: Completion, value: Any, info: GraphQLResolveInfo[Any], path: Path
    ) -> Any:
        """The response value for `value`, or an awaitable of it."""
        if value is None or value is Undefined:
            if completion.non_null:
                raise Abandoned
            return None
        if isinstance(value, Exception):
            raise Abandoned
        kind = completion.kind
        if kind == Completion.LEAF:
            serialized = completion.serialize(value)
            if serialized is None or serialized is Undefined:
                raise Abandoned
            return serialized
        if kind == Completion.LIST:
            return self.complete_list(completion, value, info, path)
        if kind == Completion.OBJECT:
            return self.complete_object(completion.object_type, completion.sub, value, info, path)
        abstract = completion.abstract_type
        resolve_type = abstract.resolve_type or self.executor.type_resolver
        name = resolve_type(value, info, abstract)
        if not isinstance(name, str):
            if iscoroutine(name):
                name.close()
            raise Abandoned
        try:
            runtime_type, sub = completion.types[name]
        except KeyError:
            raise Abandoned from None
        return self.complete_object(runtime_type, sub, value, info, path)

    def complete_object(
        self,
        type_: GraphQLObjectType,
        sub: Selection,
        value: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
    ) -> Any:
        if type_.is_type_of is not None:
            matches = type_.is_type_of(value, info)
            if matches is not True:
                if iscoroutine(matches):
                    matches.close()
                raise Abandoned
        return self.select(sub, value, path)

    def complete_list(
        self, completion: Completion, value: Any, info: GraphQLResolveInfo[Any], path: Path
    ) -> Any:
        if not is_iterable(value):
            raise Abandoned
        of = completion.of
        items: list[Any] = []
        pending: list[int] = []
        try:
            if of.kind == Completion.LEAF:
                for item in value:
                    if self.is_awaitable(item):
                        _close(item)
                        raise Abandoned
                    items.append(self.complete(of, item, info, path))
                return items
            for index, item in enumerate(value):
                if self.is_awaitable(item):
                    _close(item)
                    raise Abandoned
                completed = self.complete(of, item, info, Path(path, index, None))
                if self.is_awaitable(completed):
                    pending.append(index)
                items.append(completed)
        except Exception as error:
            if not pending:
                raise
            return _failed([items[index] for index in pending], error)
        if not pending:
            return items
        return _settled(items, pending)


def _leaf(plan: FieldPlan, source: Any) -> Any:
    """A plain attribute's scalar or enum value, serialised (no path, no resolve info)."""
    value: Any = getattr(source, plan.attribute, Undefined)
    if value is None:
        if plan.completion.non_null:
            raise Abandoned
        return None
    exact = plan.exact
    if type(value) is exact and (exact is not int or _INT_MIN <= cast(int, value) <= _INT_MAX):
        return value
    if value is Undefined or isinstance(value, Exception):
        raise Abandoned
    serialized = plan.completion.serialize(value)
    if serialized is None or serialized is Undefined:
        raise Abandoned
    return serialized


def _close(awaitable: Any) -> None:
    if iscoroutine(awaitable):
        awaitable.close()


async def _settled(results: Any, pending: list[Any]) -> Any:
    """`results` with its awaitables at `pending` replaced by their values. Every one is
    awaited to its end before a failure is raised, so none runs on after the plan is
    abandoned (the normal path then starts from a quiet state and the loaders' caches)."""
    if len(pending) == 1:
        (key,) = pending
        results[key] = await results[key]
        return results
    values = await asyncio.gather(*(results[key] for key in pending), return_exceptions=True)
    for key, value in zip(pending, values, strict=True):
        if isinstance(value, BaseException):
            raise Abandoned from value
        results[key] = value
    return results


async def _failed(pending: list[Awaitable[Any]], error: Exception) -> Any:
    """Settles the work already started when a sibling failed, then fails too."""
    await asyncio.gather(*pending, return_exceptions=True)
    raise Abandoned from error
