"""Static query cost analysis, used to reject over-budget operations before execution.

Cost model:

* a field whose unwrapped type is an object, interface or union costs 1 plus the cost of its
  selection; scalar and enum fields (including ``__typename``) cost 0;
* a field whose schema definition has a ``first`` or ``last`` argument multiplies the cost of its
  selection by its page size: the larger of ``first``/``last`` from the query (literal, variable or
  variable default), else ``field_page_sizes[(parent_type, field)]``, else ``default_page_size``,
  where ``parent_type`` is the type the field is selected on (a fragment's type condition);
* a field listed in ``list_arguments`` as ``(parent_type, field) -> (argument, cap)`` (a list of
  objects fetched by a list argument, such as ``nodes(ids:)``) multiplies the cost of its
  selection by the number of values that argument holds (a single value counts 1), or by ``cap``
  when that is not known before execution;
* fragments are expanded in place and, on abstract types, every type condition is added up, as
  are fields selected more than once, so the cost is an upper bound; fields skipped by
  ``@skip``/``@include`` cost nothing;
* introspection fields (``__schema``, ``__type``) are ordinary composite fields.
"""

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from contextlib import suppress
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionNode,
    SelectionSetNode,
    TypeMetaFieldDef,
    TypeNameMetaFieldDef,
    ValueNode,
    VariableNode,
    get_named_type,
    is_composite_type,
    value_from_ast_untyped,
)
from strawberry.types import ExecutionContext

from resolvers.error_codes import ErrorCode

_META_FIELDS = {
    "__schema": SchemaMetaFieldDef,
    "__type": TypeMetaFieldDef,
    "__typename": TypeNameMetaFieldDef,
}
_PAGE_ARGUMENTS = ("first", "last")


def operation_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    *,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    default_page_size: int,
    field_page_sizes: Mapping[tuple[str, str], int] | None = None,
    list_arguments: Mapping[tuple[str, str], tuple[str, int]] | None = None,
) -> int:
    """Estimate the cost of the selected operation of ``document`` (see the module docstring).

    Returns 0 when the operation cannot be selected (missing name, or several operations and no
    name): validation or execution reports that.
    """
    return _estimate(
        schema,
        document,
        operation_name,
        variables,
        default_page_size,
        field_page_sizes,
        list_arguments,
    )[0]


def _estimate(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    default_page_size: int,
    field_page_sizes: Mapping[tuple[str, str], int] | None,
    list_arguments: Mapping[tuple[str, str], tuple[str, int]] | None = None,
) -> tuple[int, set[str]]:
    """The cost, and the names of the variables the estimate depends on."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        operation = operations[0] if len(operations) == 1 else None
    else:
        operation = next((o for o in operations if o.name and o.name.value == operation_name), None)
    root_type = schema.get_root_type(operation.operation) if operation else None
    if operation is None or root_type is None:
        return 0, set()
    defaults = {
        d.variable.name.value: value_from_ast_untyped(d.default_value)
        for d in operation.variable_definitions or ()
        if d.default_value is not None
    }
    walker = _CostWalker(
        schema,
        document,
        {**defaults, **(variables or {})},
        default_page_size,
        field_page_sizes or {},
        list_arguments or {},
    )
    return walker.selection_cost(operation.selection_set, root_type), walker.variables_read


class _CostWalker:
    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: dict[str, Any],
        default_page_size: int,
        field_page_sizes: Mapping[tuple[str, str], int],
        list_arguments: Mapping[tuple[str, str], tuple[str, int]],
    ) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variables = variables
        self.default_page_size = default_page_size
        self.field_page_sizes = field_page_sizes
        self.list_arguments = list_arguments
        # Memoised per fragment so that fragments spreading others many times stay linear.
        self.fragment_costs: dict[str, int] = {}
        self.expanding: set[str] = set()
        self.variables_read: set[str] = set()

    def selection_cost(
        self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType
    ) -> int:
        total = 0
        for selection in selection_set.selections if selection_set else ():
            if self._skipped(selection):
                continue
            if isinstance(selection, FieldNode):
                total += self._field_cost(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                if inner is not None:
                    total += self.selection_cost(selection.selection_set, inner)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment_cost(selection.name.value)
        return total

    def _fragment_cost(self, name: str) -> int:
        fragment = self.fragments.get(name)
        # A spread of a fragment already being expanded is a cycle (invalid anyway): count 0.
        if fragment is None or name in self.expanding:
            return 0
        if name not in self.fragment_costs:
            condition = self.schema.get_type(fragment.type_condition.name.value)
            self.expanding.add(name)
            cost = self.selection_cost(fragment.selection_set, condition) if condition else 0
            self.expanding.discard(name)
            self.fragment_costs[name] = cost
        return self.fragment_costs[name]

    def _field_cost(self, node: FieldNode, parent: GraphQLNamedType) -> int:
        field = self._field_definition(node.name.value, parent)
        if field is None or not is_composite_type(get_named_type(field.type)):
            return 0
        children = self.selection_cost(node.selection_set, get_named_type(field.type))
        listed = self.list_arguments.get((parent.name, node.name.value))
        if listed is not None:
            return 1 + self._list_size(node, *listed) * children
        if not any(name in field.args for name in _PAGE_ARGUMENTS):
            return 1 + children
        return 1 + self._page_size(node, parent.name) * children

    def _field_definition(self, name: str, parent: GraphQLNamedType) -> GraphQLField | None:
        if name in _META_FIELDS:
            return _META_FIELDS[name]
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            field: GraphQLField | None = parent.fields.get(name)
            return field
        return None

    def _page_size(self, node: FieldNode, parent_name: str) -> int:
        fallback = self.field_page_sizes.get((parent_name, node.name.value), self.default_page_size)
        sizes = [
            self._page_argument(argument.value, fallback)
            for argument in node.arguments or ()
            if argument.name.value in _PAGE_ARGUMENTS
        ]
        return max(sizes, default=fallback)

    def _list_size(self, node: FieldNode, argument_name: str, cap: int) -> int:
        argument = next((a for a in node.arguments or () if a.name.value == argument_name), None)
        value = self._value(argument.value) if argument else None
        if isinstance(value, list):
            return len(value)
        # One ID stands for a list of one; anything else is not known before execution.
        return 1 if isinstance(value, str | int) and not isinstance(value, bool) else cap

    def _value(self, value_node: ValueNode) -> Any:
        if isinstance(value_node, VariableNode):
            self.variables_read.add(value_node.name.value)
        return value_from_ast_untyped(value_node, self.variables)

    def _page_argument(self, value_node: ValueNode, fallback: int) -> int:
        value = self._value(value_node)
        valid = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return value if valid else fallback

    def _skipped(self, selection: SelectionNode) -> bool:
        for directive in selection.directives or ():
            name = directive.name.value
            arguments = directive.arguments or ()
            condition = next((a.value for a in arguments if a.name.value == "if"), None)
            value = self._value(condition) if condition else None
            if isinstance(value, bool) and (name, value) in (("skip", True), ("include", False)):
                return True
        return False


_Reading = tuple[tuple[str, type, Any], ...]
"""The variables an estimate depends on: name, type and value (so that 1 and True differ)."""
_MISSING = object()
_READINGS_PER_DOCUMENT = 8


def _reading(variables: Mapping[str, Any], names: Iterable[str]) -> _Reading:
    values = ((name, variables.get(name, _MISSING)) for name in names)
    return tuple((name, type(value), value) for name, value in values)


class CostLimit:
    """Rejects operations whose :func:`operation_cost` exceeds ``max_cost``, remembering the
    estimates of the last ``maxsize`` documents.

    An estimate depends on the document, the operation and the few variables its walk reads
    (page sizes, ``@skip``/``@include`` conditions), so it is kept with the values of those
    variables and reused for any request that gives them the same values (an id or an input
    does not matter). The rejection is a ``QUERY_TOO_COMPLEX`` error with ``cost`` and
    ``maxCost`` in its extensions.
    """

    def __init__(
        self,
        max_cost: int,
        default_page_size: int = 20,
        field_page_sizes: Mapping[tuple[str, str], int] | None = None,
        list_arguments: Mapping[tuple[str, str], tuple[str, int]] | None = None,
        maxsize: int = 512,
    ) -> None:
        self.max_cost = max_cost
        self.default_page_size = default_page_size
        self.field_page_sizes = field_page_sizes
        self.list_arguments = list_arguments
        self.maxsize = maxsize
        self._estimates: OrderedDict[tuple[str, str | None], list[tuple[_Reading, int]]] = (
            OrderedDict()
        )
        self.hits = 0
        """Estimates reused so far."""
        self.misses = 0
        """Estimates made so far."""

    def cost(self, context: ExecutionContext) -> int:
        """The estimated cost of the operation of ``context`` (parsed)."""
        document = context.graphql_document
        assert document is not None
        variables = context.variables or {}
        query = context.query
        key = (query, context.operation_name) if isinstance(query, str) else None
        known = self._estimates.get(key) if key is not None else None
        for reading, cost in known or ():
            if reading == _reading(variables, [name for name, _, _ in reading]):
                with suppress(KeyError):  # another thread's request may have evicted it
                    self._estimates.move_to_end(key)  # type: ignore[arg-type]
                self.hits += 1
                return cost
        self.misses += 1
        cost, names = _estimate(
            context.schema._schema,
            document,
            context.operation_name,
            variables,
            self.default_page_size,
            self.field_page_sizes,
            self.list_arguments,
        )
        if key is not None:
            entries = self._estimates.setdefault(key, [])
            self._estimates.move_to_end(key)
            entries.insert(0, (_reading(variables, sorted(names)), cost))
            del entries[_READINGS_PER_DOCUMENT:]
            while len(self._estimates) > self.maxsize:
                self._estimates.popitem(last=False)
        return cost

    def errors(self, context: ExecutionContext) -> list[GraphQLError] | None:
        """The rejection of the operation of ``context`` (parsed and valid), or None."""
        return self.rejection(self.cost(context))

    def rejection(self, cost: int) -> list[GraphQLError] | None:
        """The rejection of an operation of estimated ``cost``, or None."""
        if cost <= self.max_cost:
            return None
        return [
            GraphQLError(
                f"Query cost {cost} exceeds the limit of {self.max_cost}.",
                extensions={
                    "code": ErrorCode.QUERY_TOO_COMPLEX,
                    "cost": cost,
                    "maxCost": self.max_cost,
                },
            )
        ]
