"""The filter language's syntax: a LALR grammar (lark), the parser, the limits on a filter's
size and nesting, and the error that points at the offending character."""

from __future__ import annotations

from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

MAX_FILTER_LENGTH = 4000
MAX_DEPTH = 32
MAX_COMPARISONS = 100
#: the forms of a comparison in the parsed tree (its leaves, as far as logic goes)
COMPARISONS = ("compare", "in_list", "like", "is_null")

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


def check_shape(tree: Tree[Token], text: str) -> None:
    """Bound nesting depth and size (iteratively, so no input can exhaust the stack)."""
    comparisons = 0
    stack: list[tuple[Tree[Token], int]] = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise QueryLanguageError(
                f"The filter nests deeper than {MAX_DEPTH} levels.",
                text=text,
                position=start_of(node),
            )
        if node.data in COMPARISONS:
            comparisons += 1
            if comparisons > MAX_COMPARISONS:
                raise QueryLanguageError(
                    f"The filter has more than {MAX_COMPARISONS} comparisons.",
                    text=text,
                    position=start_of(node),
                )
            continue
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))


def start_of(node: Tree[Token] | Token) -> int:
    if isinstance(node, Token):
        return node.start_pos or 0
    return getattr(node.meta, "start_pos", 0) if not node.meta.empty else 0
