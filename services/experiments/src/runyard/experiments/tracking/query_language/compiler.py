"""Compiling a parsed filter into a SQLAlchemy boolean over ``Experiment``. Every value the user
wrote becomes a bound parameter; field names only ever select one of the known columns, and JSON
keys (``metrics.<key>``) are bound parameters too. No SQL text is built from input.

Logic is two-valued: a comparison with a missing value (no such metric, no model type) is
false, and ``not`` of it is true.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lark import Token, Tree
from sqlalchemy import ColumnElement, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

from runyard.experiments.models import STATUSES, Experiment
from runyard.experiments.tracking.query_language.fields import (
    ATTRIBUTES,
    FIELD_HELP,
    MAX_KEY_LENGTH,
    NAMESPACES,
    Attribute,
    jsonb_number,
    jsonb_text,
    slugify,
)
from runyard.experiments.tracking.query_language.syntax import (
    COMPARISONS,
    QueryLanguageError,
    check_shape,
    parse,
)

MAX_IN_VALUES = 500


@dataclass(frozen=True)
class FieldRef:
    name: str  # as written, for messages
    position: int
    attribute: Attribute | None = None
    namespace: str | None = None  # "metrics" | "params"
    key: str | None = None
    is_tag: bool = False


Value = str | int | float | bool


class Compiler:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, message: str, position: int | None) -> QueryLanguageError:
        return QueryLanguageError(message, text=self.text, position=position or 0)

    def compile(self, node: Tree[Token]) -> ColumnElement[bool]:
        if node.data == "or_expr":
            return or_(*(self.compile(c) for c in node.children if isinstance(c, Tree)))
        if node.data == "and_expr":
            return and_(*(self.compile(c) for c in node.children if isinstance(c, Tree)))
        if node.data == "not_":
            (child,) = (c for c in node.children if isinstance(c, Tree))
            return not_(self.compile(child))
        handler: Callable[[list[Any]], ColumnElement[bool]] = getattr(self, f"_{node.data}")
        return handler(list(node.children))

    # --- leaves

    def field(self, node: Tree[Token]) -> FieldRef:
        parts = [t for t in node.children if isinstance(t, Token)]
        position = parts[0].start_pos or 0
        head = str(parts[0]).lower()
        if len(parts) == 1:
            if head == "tag":
                return FieldRef("tag", position, is_tag=True)
            if head in ATTRIBUTES:
                return FieldRef(head, position, attribute=ATTRIBUTES[head])
            if head in NAMESPACES:
                raise self.error(
                    f"{head} needs a key: {head}.<key> (for example {head}.val_accuracy)",
                    position + len(head),
                )
            raise self.error(f"Unknown field {str(parts[0])!r}; fields are {FIELD_HELP}", position)
        if head not in NAMESPACES:
            raise self.error(
                f"Unknown field {str(parts[0])!r}: only metrics.<key> and params.<key> have keys",
                position,
            )
        key = str(parts[1])
        if parts[1].type == "QKEY":
            key = key[1:-1]
        if not key or len(key) > MAX_KEY_LENGTH:
            raise self.error(
                f"A key is 1 to {MAX_KEY_LENGTH} characters long.", parts[1].start_pos or 0
            )
        return FieldRef(f"{head}.{key}", position, namespace=head, key=key)

    def value(self, token: Token) -> Value:
        if token.type == "STRING":
            quote = token[0]
            return str(token)[1:-1].replace(quote * 2, quote)
        if token.type == "NUMBER":
            raw = str(token)
            if re.fullmatch(r"[+-]?\d+", raw):
                number = int(raw)
                if abs(number) > 2**53:
                    raise self.error("The number is too large.", token.start_pos or 0)
                return number
            parsed = float(raw)
            if parsed in (float("inf"), float("-inf")):
                raise self.error("The number is too large.", token.start_pos or 0)
            return parsed
        return token.type == "TRUE"

    def typed(self, ref: FieldRef, token: Token, value: Value) -> Any:
        """``value`` converted for an attribute, or a 400 naming what was expected."""
        assert ref.attribute is not None
        kind = ref.attribute.kind
        position = token.start_pos or 0
        if kind in ("text", "status"):
            if not isinstance(value, str):
                raise self.error(f"{ref.name} is compared with a string ('...')", position)
            if kind == "status" and value not in STATUSES:
                raise self.error(
                    f"{value!r} is not a status; statuses are {', '.join(STATUSES)}", position
                )
            return value
        if kind == "datetime":
            if not isinstance(value, str):
                raise self.error(
                    f"{ref.name} is compared with a date or time in quotes ('2026-01-31')",
                    position,
                )
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                raise self.error(
                    f"{value!r} is not an ISO 8601 date or time ('2026-01-31T12:00:00Z')",
                    position,
                ) from None
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        if kind == "uuid":
            try:
                return uuid.UUID(str(value)) if isinstance(value, str) else None
            except ValueError:
                pass
            raise self.error(f"{ref.name} is compared with a UUID in quotes", position)
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(f"{ref.name} is compared with a whole number", position)
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(f"{ref.name} is compared with a number", position)
        return value

    # --- comparison forms

    def _compare(self, children: list[Any]) -> ColumnElement[bool]:
        field_node, op_token, value_token = children
        ref = self.field(field_node)
        op = "!=" if str(op_token) == "<>" else str(op_token)
        value = self.value(value_token)
        if ref.is_tag:
            return self._tag_compare(ref, op, op_token, value, value_token)
        if ref.namespace is not None:
            return self._json_compare(ref, op, value, value_token)
        assert ref.attribute is not None
        if ref.attribute.kind in ("status", "uuid") and op not in ("=", "!="):
            raise self.error(f"{ref.name} only supports = and != (and IN)", op_token.start_pos)
        typed = self.typed(ref, value_token, value)
        return self._guard(ref, _apply(ref.attribute.column, op, typed))

    def _in_list(self, children: list[Any]) -> ColumnElement[bool]:
        field_node, *rest = children
        negate = bool(rest) and isinstance(rest[0], Token) and rest[0].type == "NOT"
        tokens: list[Token] = rest[1:] if negate else rest
        if len(tokens) > MAX_IN_VALUES:
            raise self.error(
                f"IN takes at most {MAX_IN_VALUES} values", tokens[MAX_IN_VALUES].start_pos or 0
            )
        ref = self.field(field_node)
        values = [self.value(t) for t in tokens]
        if ref.is_tag:
            slugs = [self._tag_value(v, t) for v, t in zip(values, tokens, strict=True)]
            expr: ColumnElement[bool] = Experiment.tags.overlap(literal(slugs, ARRAY(String(64))))
        elif ref.namespace is not None:
            expr = or_(*(self._json_equals(ref, v, t) for v, t in zip(values, tokens, strict=True)))
        else:
            assert ref.attribute is not None
            typed = [self.typed(ref, t, v) for v, t in zip(values, tokens, strict=True)]
            expr = self._guard(ref, ref.attribute.column.in_(typed))
        return not_(expr) if negate else expr

    def _like(self, children: list[Any]) -> ColumnElement[bool]:
        field_node, *rest = children
        negate = rest[0].type == "NOT"
        like_token, pattern_token = rest[1:] if negate else rest
        ref = self.field(field_node)
        pattern = self.value(pattern_token)
        assert isinstance(pattern, str)
        insensitive = str(like_token).lower() == "ilike"

        def matches(expr: Any) -> ColumnElement[bool]:
            return expr.ilike(pattern) if insensitive else expr.like(pattern)  # type: ignore[no-any-return]

        if ref.is_tag:
            slug = func.unnest(Experiment.tags).table_valued("slug").render_derived(name="tag")
            result: ColumnElement[bool] = (
                select(1).select_from(slug).where(matches(slug.c.slug)).exists()
            )
        elif ref.namespace is not None:
            assert ref.key is not None
            text_value = jsonb_text(NAMESPACES[ref.namespace], ref.key)
            result = and_(text_value.is_not(None), matches(text_value))
        else:
            assert ref.attribute is not None
            if ref.attribute.kind not in ("text", "status"):
                raise self.error(
                    f"LIKE works on text; {ref.name} is not text", like_token.start_pos
                )
            result = self._guard(ref, matches(ref.attribute.column))
        return not_(result) if negate else result

    def _is_null(self, children: list[Any]) -> ColumnElement[bool]:
        field_node, *rest = children
        negate = bool(rest)
        ref = self.field(field_node)
        if ref.is_tag:
            missing: ColumnElement[bool] = func.cardinality(Experiment.tags) == 0
        elif ref.namespace is not None:
            assert ref.key is not None
            missing = not_(NAMESPACES[ref.namespace].has_key(ref.key))
        else:
            assert ref.attribute is not None
            nullable = ref.attribute.nullable
            missing = ref.attribute.column.is_(None) if nullable else false()
        return not_(missing) if negate else missing

    # --- helpers

    def _guard(self, ref: FieldRef, expr: ColumnElement[bool]) -> ColumnElement[bool]:
        """``col IS NOT NULL AND <expr>``: never NULL, so NOT of a comparison is its negation."""
        if ref.attribute is not None and ref.attribute.nullable:
            return and_(ref.attribute.column.is_not(None), expr)
        return expr

    def _tag_value(self, value: Value, token: Token) -> str:
        if not isinstance(value, str) or not slugify(value):
            raise self.error("tag is compared with a tag name or slug in quotes", token.start_pos)
        return slugify(value)

    def _tag_compare(
        self, ref: FieldRef, op: str, op_token: Token, value: Value, token: Token
    ) -> ColumnElement[bool]:
        if op not in ("=", "!="):
            raise self.error("tag only supports =, !=, IN and LIKE", op_token.start_pos or 0)
        has = Experiment.tags.contains(literal([self._tag_value(value, token)], ARRAY(String(64))))
        return has if op == "=" else not_(has)

    def _json_equals(self, ref: FieldRef, value: Value, token: Token) -> ColumnElement[bool]:
        """Equality by JSON containment (``metrics @> '{"k": v}'``), which the GIN index serves."""
        assert ref.namespace is not None and ref.key is not None
        if ref.namespace == "metrics" and isinstance(value, bool | str):
            raise self.error(f"{ref.name} is a metric: compare it with a number", token.start_pos)
        return NAMESPACES[ref.namespace].contains({ref.key: value})

    def _json_compare(
        self, ref: FieldRef, op: str, value: Value, token: Token
    ) -> ColumnElement[bool]:
        assert ref.namespace is not None and ref.key is not None
        document = NAMESPACES[ref.namespace]
        if op == "=":
            return self._json_equals(ref, value, token)
        if isinstance(value, bool):
            if op != "!=":
                raise self.error(
                    f"{ref.name}: true and false only compare with = and !=", token.start_pos
                )
            return and_(
                func.jsonb_typeof(document[ref.key]) == "boolean",
                not_(document.contains({ref.key: value})),
            )
        if isinstance(value, str):
            if ref.namespace == "metrics":
                raise self.error(
                    f"{ref.name} is a metric: compare it with a number", token.start_pos
                )
            text_value = jsonb_text(document, ref.key)
            return and_(text_value.is_not(None), _apply(text_value, op, value))
        number = jsonb_number(document, ref.key)
        return and_(number.is_not(None), _apply(number, op, value))


def _apply(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    operators: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
        "=": lambda c, v: c == v,
        "!=": lambda c, v: c != v,
        "<": lambda c, v: c < v,
        "<=": lambda c, v: c <= v,
        ">": lambda c, v: c > v,
        ">=": lambda c, v: c >= v,
    }
    return operators[op](column, value)


def compile_filter(text: str | None) -> ColumnElement[bool]:
    """``text`` as a SQL boolean over ``Experiment``; raises ``QueryLanguageError``."""
    if text is None or not text.strip():
        return true()
    tree = parse(text)
    check_shape(tree, text)
    if tree.data in (*COMPARISONS, "or_expr", "and_expr", "not_"):
        return Compiler(text).compile(tree)
    raise QueryLanguageError("The filter could not be parsed.", text=text, position=0)
