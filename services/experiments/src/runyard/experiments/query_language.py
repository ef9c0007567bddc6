"""The experiment search language: ``filter`` expressions and ``order_by``.

A filter is parsed by a LALR grammar (lark) into a tree, and the tree is compiled into a
SQLAlchemy boolean expression. Every value the user wrote becomes a bound parameter; field
names only ever select one of the columns below, and JSON keys (``metrics.<key>``) are bound
parameters too. No SQL text is built from input.

    status = 'completed' and metrics.val_accuracy >= 0.9
    (model_type in ('cnn1d', 'resnet') or tag = 'baseline') and not name like 'tmp-%'
    params.optimizer = 'adam' and created_at > '2026-01-01' and dataset_id is not null

Logic is two-valued: a comparison with a missing value (no such metric, no model type) is
false, and ``not`` of it is true.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

from runyard.experiments.models import SCHEMA, STATUSES, Experiment

MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 32
MAX_COMPARISONS = 100
MAX_IN_VALUES = 500
MAX_KEY_LENGTH = 100

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT not_expr -> not_
         | atom
?atom: comparison
     | "(" or_expr ")"

comparison: field OP value                                -> compare
          | field NOT? _IN "(" value ("," value)* ")"     -> in_list
          | field NOT? LIKE STRING                        -> like
          | field _IS NOT? _NULL                          -> is_null

field: NAME ("." (NAME | QKEY))?
?value: STRING | NUMBER | TRUE | FALSE

OP: "=" | "!=" | "<>" | "<=" | ">=" | "<" | ">"
// keywords end at a word boundary ("andd" and "notes" are names) and win over names
_OR.2: /or\b/i
_AND.2: /and\b/i
NOT.2: /not\b/i
_IN.2: /in\b/i
LIKE.2: /i?like\b/i
_IS.2: /is\b/i
_NULL.2: /null\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NAME: /[a-z_][a-z0-9_]*/i
QKEY: /`[^`\n]+`/
STRING: /'(?:[^']|'')*'/ | /"(?:[^"]|"")*"/
NUMBER: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/
%ignore /\s+/
"""

_parser = Lark(
    GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True, maybe_placeholders=False
)

#: how the errors name the grammar's terminals
_TERMINALS = {
    "OP": "a comparison (=, !=, <, <=, >, >=)",
    "NOT": "NOT",
    "_IN": "IN",
    "LIKE": "LIKE",
    "_IS": "IS",
    "_NULL": "NULL",
    "_AND": "AND",
    "_OR": "OR",
    "NAME": "a field name",
    "QKEY": "a `quoted key`",
    "STRING": "a string",
    "NUMBER": "a number",
    "TRUE": "TRUE",
    "FALSE": "FALSE",
    "LPAR": "'('",
    "RPAR": "')'",
    "COMMA": "','",
    "DOT": "'.'",
    "$END": "the end of the filter",
}


class QueryLanguageError(ValueError):
    """A filter or order_by the language does not accept; ``position`` is a 0-based offset."""

    def __init__(self, message: str, *, text: str, position: int, param: str = "filter") -> None:
        super().__init__(message)
        self.message = message
        self.text = text
        self.position = max(0, min(position, len(text)))
        self.param = param

    @property
    def pointer(self) -> str:
        """The input's line holding the error, and a caret under the offending character."""
        start = self.text.rfind("\n", 0, self.position) + 1
        end = self.text.find("\n", self.position)
        line = self.text[start : end if end >= 0 else len(self.text)]
        return f"{line}\n{' ' * (self.position - start)}^"

    def problem_extra(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "column": self.position + 1,
            "pointer": self.pointer,
            "errors": [
                {
                    "loc": ["query", self.param],
                    "msg": self.message,
                    "type": "query_language",
                    "position": self.position,
                }
            ],
        }


# --- fields ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attribute:
    column: Any
    kind: str  # "text" | "status" | "datetime" | "uuid" | "int" | "float"
    nullable: bool


ATTRIBUTES: dict[str, Attribute] = {
    "status": Attribute(Experiment.status, "status", False),
    "name": Attribute(Experiment.name, "text", False),
    "model_type": Attribute(Experiment.model_type, "text", True),
    "created_at": Attribute(Experiment.created_at, "datetime", False),
    "updated_at": Attribute(Experiment.updated_at, "datetime", False),
    "started_at": Attribute(Experiment.started_at, "datetime", True),
    "ended_at": Attribute(Experiment.ended_at, "datetime", True),
    "dataset_id": Attribute(Experiment.dataset_id, "uuid", True),
    "owner_id": Attribute(Experiment.owner_id, "uuid", False),
    "best_epoch": Attribute(Experiment.best_epoch, "int", True),
    "total_epochs": Attribute(Experiment.total_epochs, "int", False),
    "duration_seconds": Attribute(Experiment.duration_seconds, "float", True),
}
NAMESPACES = {"metrics": Experiment.metrics, "params": Experiment.hyperparameters}
FIELD_HELP = ", ".join([*ATTRIBUTES, "tag", "metrics.<key>", "params.<key>"])


def jsonb_number(document: Any, key: str) -> ColumnElement[float]:
    """``experiments.jsonb_number(doc, key)``: the key's JSON number as float8, else NULL.

    The same SQL function backs the expression indexes on common metrics (migration 0002).
    """
    return getattr(func, SCHEMA).jsonb_number(document, key, type_=Float)


def jsonb_text(document: Any, key: str) -> ColumnElement[str]:
    """The key's JSON string, else NULL (a number or a missing key never compares as text)."""
    return case((func.jsonb_typeof(document[key]) == "string", document[key].astext))


def slugify(value: str) -> str:
    ascii_ = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_.lower()).strip("-")


# --- parsing -----------------------------------------------------------------------------------


def _expected(names: set[str] | frozenset[str] | None) -> str:
    shown = sorted({_TERMINALS.get(n, n) for n in names or ()})
    if not shown:
        return ""
    if len(shown) == 1:
        return f"; expected {shown[0]}"
    return f"; expected {', '.join(shown[:-1])} or {shown[-1]}"


def parse(text: str, *, param: str = "filter") -> Tree[Token]:
    if len(text) > MAX_FILTER_LENGTH:
        raise QueryLanguageError(
            f"The filter is longer than {MAX_FILTER_LENGTH} characters.",
            text=text,
            position=MAX_FILTER_LENGTH,
            param=param,
        )
    try:
        return _parser.parse(text)
    except UnexpectedCharacters as exc:
        at = exc.pos_in_stream or 0
        raise QueryLanguageError(
            f"Unexpected character {text[at]!r} at position {at}{_expected(exc.allowed)}",
            text=text,
            position=at,
            param=param,
        ) from None
    except UnexpectedToken as exc:
        token = exc.token
        if token.type == "$END":
            position = len(text)
            what = "Unexpected end of the filter"
        else:
            position = token.start_pos or 0
            what = f"Unexpected {str(token)!r} at position {position}"
        raise QueryLanguageError(
            f"{what}{_expected(exc.accepts or exc.expected)}",
            text=text,
            position=position,
            param=param,
        ) from None
    except UnexpectedEOF as exc:
        raise QueryLanguageError(
            f"Unexpected end of the filter{_expected(set(exc.expected))}",
            text=text,
            position=len(text),
            param=param,
        ) from None
    except UnexpectedInput as exc:  # pragma: no cover - the three above are all lark raises
        raise QueryLanguageError(
            "The filter could not be parsed.", text=text, position=0, param=param
        ) from exc


def _check_shape(tree: Tree[Token], text: str) -> None:
    """Bound nesting depth and size (iteratively, so no input can exhaust the stack)."""
    comparisons = 0
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise QueryLanguageError(
                f"The filter nests deeper than {MAX_DEPTH} levels.",
                text=text,
                position=_start(node),
            )
        if node.data in ("compare", "in_list", "like", "is_null"):
            comparisons += 1
            if comparisons > MAX_COMPARISONS:
                raise QueryLanguageError(
                    f"The filter has more than {MAX_COMPARISONS} comparisons.",
                    text=text,
                    position=_start(node),
                )
            continue
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def _start(node: Tree[Token] | Token) -> int:
    if isinstance(node, Token):
        return node.start_pos or 0
    return getattr(node.meta, "start_pos", 0) if not node.meta.empty else 0


# --- compiling ---------------------------------------------------------------------------------


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
        return NAMESPACES[ref.namespace].contains({ref.key: value})  # type: ignore[no-any-return]

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
    _check_shape(tree, text)
    if tree.data in ("compare", "in_list", "like", "is_null", "or_expr", "and_expr", "not_"):
        return Compiler(text).compile(tree)
    raise QueryLanguageError("The filter could not be parsed.", text=text, position=0)


# --- order_by ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ordering:
    """One sort key plus the id as tie-breaker; ``signature`` goes into cursors."""

    key: str
    descending: bool
    expression: Any
    kind: str  # cursor value kind: datetime | text | int | float
    nullable: bool

    @property
    def signature(self) -> str:
        return f"{'-' if self.descending else ''}{self.key}"


SORTABLE = {
    name: attribute
    for name, attribute in ATTRIBUTES.items()
    if name not in ("dataset_id", "owner_id")
}
ORDER_BY_RE = re.compile(
    r"^\s*(?P<minus>-)?(?P<key>(?:metrics\.(?:[A-Za-z0-9_./:-]+|`[^`\n]+`))|[a-z_]+)"
    r"(?:\s+(?P<dir>asc|desc))?\s*$",
    re.I,
)
DEFAULT_ORDER = "-created_at"


def parse_order_by(text: str | None) -> Ordering:
    """``created_at``, ``-created_at``, ``name asc``, ``metrics.val_accuracy desc`` ..."""
    text = text if text and text.strip() else DEFAULT_ORDER
    match = ORDER_BY_RE.match(text)

    def fail(message: str, position: int) -> QueryLanguageError:
        return QueryLanguageError(message, text=text, position=position, param="order_by")

    if not match:
        raise fail(
            "order_by is one field, optionally prefixed with '-' or followed by asc/desc "
            "(for example -created_at or metrics.val_accuracy desc)",
            0,
        )
    key = match["key"]
    if match["minus"] and match["dir"]:
        raise fail("Use either a '-' prefix or asc/desc, not both", match.start("dir"))
    descending = bool(match["minus"]) or (match["dir"] or "").lower() == "desc"
    if key.lower().startswith("metrics."):
        metric = key[len("metrics.") :]
        if metric.startswith("`"):
            metric = metric[1:-1]
        if len(metric) > MAX_KEY_LENGTH:
            raise fail(f"A key is 1 to {MAX_KEY_LENGTH} characters long.", match.start("key"))
        return Ordering(
            f"metrics.{metric}",
            descending,
            jsonb_number(Experiment.metrics, metric),
            "float",
            True,
        )
    attribute = SORTABLE.get(key.lower())
    if attribute is None:
        raise fail(
            f"Cannot order by {key!r}; order by {', '.join(SORTABLE)} or metrics.<key>",
            match.start("key"),
        )
    kind = "text" if attribute.kind == "status" else attribute.kind
    return Ordering(key.lower(), descending, attribute.column, kind, attribute.nullable)
