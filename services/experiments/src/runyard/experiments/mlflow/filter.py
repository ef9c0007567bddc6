"""MLflow's search filter and order_by language (as MLflow 3.17's ``SearchUtils`` reads it),
parsed by a small tokenizer and compiled to SQLAlchemy conditions on Runyard's tables.

MLflow parses filters with sqlparse, which Runyard does not depend on: this module accepts the
same language (``AND``-ed comparisons, ``metrics.``/``params.``/``tags.``/``attributes.``/
``dataset.`` identifiers and their aliases, backquoted and double-quoted keys, single- or
double-quoted strings, ``IN``/``NOT IN`` lists, ``IS [NOT] NULL``) and refuses what MLflow
refuses, with MLflow's messages, so that a client sees the same answer from either server.

An MLflow run is a Runyard experiment: metrics are the latest values in ``experiments.metrics``,
params ``experiments.hyperparameters``, tags ``experiments.kv_tags``, datasets
``experiments.inputs``. An MLflow experiment is a Runyard project.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    column,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import UnaryExpression

from runyard.experiments.mlflow.errors import MlflowError, invalid
from runyard.experiments.models import Experiment, Project, User
from runyard.experiments.tracking.query_language.fields import jsonb_number

# --- the language ---------------------------------------------------------------------------

METRIC, PARAM, TAG, ATTRIBUTE, DATASET = "metric", "parameter", "tag", "attribute", "dataset"
IDENTIFIERS = [METRIC, PARAM, TAG, ATTRIBUTE, DATASET]
ENTITY_ALIASES = {
    "metric": METRIC,
    "metrics": METRIC,
    "parameter": PARAM,
    "parameters": PARAM,
    "param": PARAM,
    "params": PARAM,
    "tag": TAG,
    "tags": TAG,
    "attribute": ATTRIBUTE,
    "attr": ATTRIBUTE,
    "attributes": ATTRIBUTE,
    "run": ATTRIBUTE,
    "dataset": DATASET,
    "datasets": DATASET,
}

METRIC_COMPARATORS = frozenset({">", ">=", "!=", "=", "<", "<="})
PARAM_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"})
TAG_COMPARATORS = PARAM_COMPARATORS
STRING_ATTRIBUTE_COMPARATORS = frozenset({"!=", "=", "LIKE", "ILIKE", "IN", "NOT IN"})
NUMERIC_ATTRIBUTE_COMPARATORS = METRIC_COMPARATORS
DATASET_COMPARATORS = STRING_ATTRIBUTE_COMPARATORS
DATASET_KEYS = frozenset({"name", "digest", "context"})

#: MLflow's ``RunInfo`` searchable attributes and the aliases ``SearchUtils`` adds
RUN_NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time", "created", "Created"})
RUN_SEARCH_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id"}
    | {"created", "Created", "run name", "Run name", "Run Name"}
)
RUN_ORDER_ATTRIBUTES = frozenset(
    {"artifact_uri", "end_time", "run_id", "run_name", "start_time", "status", "user_id"}
    | {"created", "Created"}
)
RUN_LIST_KEYS = frozenset({"run_id"})

EXPERIMENT_ATTRIBUTES = frozenset({"name", "experiment_id", "creation_time", "last_update_time"})
EXPERIMENT_NUMERIC_ATTRIBUTES = frozenset({"creation_time", "last_update_time"})
EXPERIMENT_LIST_KEYS = frozenset({"experiment_id"})

#: Runyard status -> MLflow's RunStatus
MLFLOW_STATUS = {
    "pending": "SCHEDULED",
    "running": "RUNNING",
    "paused": "RUNNING",
    "completed": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
DATASET_CONTEXT_TAG = "mlflow.data.context"


def _set(values: frozenset[str]) -> str:
    """A set as MLflow's messages print it (``{'=', '!='}``)."""
    return "{" + ", ".join(repr(v) for v in sorted(values)) + "}"


@dataclass(frozen=True)
class Clause:
    """One comparison: ``type`` one of ``IDENTIFIERS``, the key, the upper-case comparator and
    the value (text, a number, a tuple of texts for IN, None for IS NULL)."""

    type: str
    key: str
    comparator: str
    value: Any


@dataclass(frozen=True)
class Token:
    kind: str  # ident | string | number | op | word | lparen | rparen | comma | semicolon
    text: str
    position: int


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<string>'(?:''|\\.|[^'\\])*')
    |(?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.`"]))
    |(?P<ident>(?:\w+|`[^`]*`|"(?:""|\\.|[^"\\])*")(?:\.(?:\w+|`[^`]*`|"(?:""|\\.|[^"\\])*"))*)
    |(?P<op>!=|<>|<=|>=|==|=|<|>)
    |(?P<lparen>\()|(?P<rparen>\))|(?P<comma>,)|(?P<semicolon>;)
    """,
    re.VERBOSE,
)
KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE"})


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise invalid(f"Error on parsing filter '{text}': unexpected '{text[position:]}'")
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "ident" and value.upper() in KEYWORDS:
            kind = "word"
        if kind != "ws":
            tokens.append(Token(kind, value, position))
        position = match.end()
    return tokens


def _is_quoted(value: str, quote: str) -> bool:
    return len(value) >= 2 and value.startswith(quote) and value.endswith(quote)


def _trim_backticks(value: str) -> str:
    return value[1:-1] if _is_quoted(value, "`") else value


def _strip_quotes(value: str, *, expect_quoted: bool = False) -> str:
    if _is_quoted(value, "'") or _is_quoted(value, '"'):
        return value[1:-1]
    if expect_quoted:
        raise invalid(
            "Parameter value is either not quoted or unidentified quote types used for string "
            f"value {value}. Use either single or double quotes."
        )
    return value


def _is_string(token: Token) -> bool:
    """A quoted value: sqlparse reads a double-quoted one as a name MLflow accepts as a value."""
    return token.kind == "string" or (token.kind == "ident" and _is_quoted(token.text, '"'))


class _Grammar:
    """What differs between the runs' and the experiments' filters."""

    list_keys: frozenset[str] = RUN_LIST_KEYS

    def numeric(self, type_: str, key: str) -> bool:
        return type_ == ATTRIBUTE and key in RUN_NUMERIC_ATTRIBUTES

    def identifier(self, identifier: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
        parts = identifier.split(".", 1)
        if len(parts) == 1:
            entity, key = ATTRIBUTE, parts[0]
        else:
            entity, key = _trim_backticks(parts[0]), parts[1]
            if entity not in ENTITY_ALIASES:
                raise invalid(f"Invalid entity type '{entity}'. Valid values are {IDENTIFIERS}")
            entity = ENTITY_ALIASES[entity]
        key = _trim_backticks(_strip_quotes(key))
        if entity == ATTRIBUTE and key not in valid_attributes:
            raise invalid(
                f"Invalid attribute key '{key}' specified. Valid keys are "
                f"'{_set(valid_attributes)}'"
            )
        if entity == DATASET and key not in DATASET_KEYS:
            raise invalid(
                f"Invalid dataset key '{key}' specified. Valid keys are '{_set(DATASET_KEYS)}'"
            )
        return entity, key

    def null_check(self, type_: str, key: str, comparator: str) -> None:
        if type_ not in (TAG, PARAM):
            raise invalid(
                "IS NULL / IS NOT NULL is only supported for tags and params, "
                f"not for '{type_}' '{key}'"
            )


class _ExperimentGrammar(_Grammar):
    list_keys = EXPERIMENT_LIST_KEYS

    def numeric(self, type_: str, key: str) -> bool:
        return type_ == ATTRIBUTE and key in EXPERIMENT_NUMERIC_ATTRIBUTES

    def identifier(self, identifier: str, valid_attributes: frozenset[str]) -> tuple[str, str]:
        parts = identifier.split(".", 1)
        if len(parts) == 2:
            entity = parts[0]
            valid = ("attribute", "tag", "tags")
            if entity not in valid:
                raise invalid(f"Invalid entity type '{entity}'. Valid entity types are {valid}")
        return super().identifier(identifier, valid_attributes)

    def null_check(self, type_: str, key: str, comparator: str) -> None:
        if type_ != TAG:
            raise invalid(
                f"IS NULL / IS NOT NULL is only supported for tags, not for attribute '{key}'"
            )


RUNS = _Grammar()
EXPERIMENTS = _ExperimentGrammar()


def _value(grammar: _Grammar, type_: str, key: str, tokens: list[Token]) -> Any:
    """The value of a comparison (MLflow's ``_get_value``): ``tokens`` is one value token, or a
    parenthesised list."""
    token = tokens[0]
    is_list = token.kind == "lparen"
    shown = " ".join(t.text for t in tokens) if is_list else token.text
    if type_ == METRIC:
        if token.kind != "number":
            raise invalid(f"Expected numeric value type for metric. Found {shown}")
        return token.text
    if type_ in (PARAM, TAG):
        if _is_string(token) or token.kind == "ident":
            return _strip_quotes(token.text, expect_quoted=True)
        raise invalid(
            f"Expected a quoted string value for {type_} (e.g. 'my-value'). Got value {shown}"
        )
    if type_ == ATTRIBUTE:
        if grammar.numeric(type_, key):
            if token.kind != "number":
                raise invalid(
                    f"Expected numeric value type for numeric attribute: {key}. Found {shown}"
                )
            if re.fullmatch(r"-?\d+", token.text):
                return int(token.text)
            return float(token.text)
        if _is_string(token) or token.kind == "ident":
            return _strip_quotes(token.text, expect_quoted=True)
        if is_list:
            if key not in grammar.list_keys:
                raise invalid(
                    f"Only {sorted(grammar.list_keys)} attributes support comparison with a "
                    "list of quoted string values."
                )
            return _list(tokens)
        raise invalid(f"Expected a quoted string value for attributes. Got value {shown}")
    # dataset
    if _is_string(token) or token.kind == "ident":
        return _strip_quotes(token.text, expect_quoted=True)
    if is_list:
        return _list(tokens)
    raise invalid(f"Expected a quoted string value for dataset attributes. Got value {shown}")


def _list(tokens: list[Token]) -> tuple[str, ...]:
    """``('a', "b")``: a non-empty list of quoted strings."""
    inner = tokens[1:-1]
    items: list[Any] = []
    for i, token in enumerate(inner):
        if i % 2 == 1:
            if token.kind != "comma":
                raise invalid(
                    "While parsing a list in the query, expected a non-empty list of string "
                    "values, but got ill-formed list."
                )
            continue
        if _is_string(token):
            items.append(token.text[1:-1])
        elif token.kind == "number":
            items.append(float(token.text) if "." in token.text else int(token.text))
        else:
            raise invalid(
                "While parsing a list in the query, expected a non-empty list of string "
                "values, but got ill-formed list."
            )
    if not items:
        raise invalid(
            "While parsing a list in the query, expected a non-empty list of string values, "
            "but got empty list"
        )
    if not all(isinstance(item, str) for item in items):
        raise invalid(
            "While parsing a list in the query, expected string value, punctuation, or "
            f"whitespace, but got different type in list: {tuple(items)}"
        )
    return tuple(items)


def _bad_clause(tokens: list[Token]) -> MlflowError:
    shown = ", ".join(f"'{t.text}'" for t in tokens)
    return invalid(f"Invalid clause(s) in filter string: {shown}")


def parse_filter(text: str | None, grammar: _Grammar = RUNS) -> list[Clause]:
    """The filter's comparisons, or ``MlflowError`` naming what is wrong."""
    if not text or not text.strip():
        return []
    tokens = tokenize(text)
    if any(t.kind == "semicolon" for t in tokens[:-1]):
        raise invalid(
            f"Search filter contained multiple expression {text!r}. Provide AND-ed expression list."
        )
    if tokens and tokens[-1].kind == "semicolon":
        tokens = tokens[:-1]
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind == "word" and token.text.upper() == "AND":
            i += 1
            continue
        if token.kind != "ident":
            raise _bad_clause(_until_and(tokens, i))
        rest = tokens[i + 1 :]
        words = [t.text.upper() if t.kind == "word" else "" for t in rest[:3]]
        if words[:2] == ["IS", "NULL"] or words[:3] == ["IS", "NOT", "NULL"]:
            comparator = "IS NULL" if words[1] == "NULL" else "IS NOT NULL"
            type_, key = grammar.identifier(token.text, _attributes(grammar))
            grammar.null_check(type_, key, comparator)
            clauses.append(Clause(type_, key, comparator, None))
            i += 3 if comparator == "IS NULL" else 4
            continue
        if words[:1] == ["IN"] or words[:2] == ["NOT", "IN"]:
            comparator = "IN" if words[0] == "IN" else "NOT IN"
            start = i + (2 if comparator == "IN" else 3)
            if start >= len(tokens) or tokens[start].kind != "lparen":
                raise _bad_clause(_until_and(tokens, i))
            end = start
            while end < len(tokens) and tokens[end].kind != "rparen":
                end += 1
            if end == len(tokens):
                raise _bad_clause(tokens[i:])
            value_tokens = tokens[start : end + 1]
            i = end + 1
        elif rest and (
            rest[0].kind == "op" or (rest[0].kind == "word" and words[0] in ("LIKE", "ILIKE"))
        ):
            comparator = rest[0].text.upper()
            if len(rest) < 2 or rest[1].kind not in ("string", "number", "ident", "lparen"):
                raise _bad_clause(_until_and(tokens, i))
            if rest[1].kind == "lparen":
                end = i + 2
                while end < len(tokens) and tokens[end].kind != "rparen":
                    end += 1
                if end == len(tokens):
                    raise _bad_clause(tokens[i:])
                value_tokens = tokens[i + 2 : end + 1]
                i = end + 1
            else:
                value_tokens = [rest[1]]
                i += 3
        else:
            raise _bad_clause(_until_and(tokens, i))
        if i < len(tokens) and not (tokens[i].kind == "word" and tokens[i].text.upper() == "AND"):
            raise _bad_clause(_until_and(tokens, i))
        type_, key = grammar.identifier(token.text, _attributes(grammar))
        value = _value(grammar, type_, key, value_tokens)
        clauses.append(Clause(type_, key, comparator, value))
    return clauses


def _attributes(grammar: _Grammar) -> frozenset[str]:
    return (
        EXPERIMENT_ATTRIBUTES if isinstance(grammar, _ExperimentGrammar) else RUN_SEARCH_ATTRIBUTES
    )


def _until_and(tokens: list[Token], start: int) -> list[Token]:
    """The tokens from ``start`` up to the next AND: what the error message shows (a stray
    keyword such as OR alone)."""
    if tokens[start].kind == "word":
        return tokens[start : start + 1]
    end = start
    while end < len(tokens) and not (
        tokens[end].kind == "word" and tokens[end].text.upper() == "AND"
    ):
        end += 1
    return tokens[start : max(end, start + 1)]


def _check_comparator(type_: str, key: str, comparator: str, grammar: _Grammar) -> None:
    """MLflow's ``is_metric`` / ``is_param`` / ... checks, with their messages."""
    if type_ == METRIC:
        allowed, close = METRIC_COMPARATORS, ""
    elif type_ == PARAM:
        allowed, close = PARAM_COMPARATORS, "'"
    elif type_ == TAG:
        allowed, close = TAG_COMPARATORS, ""
    elif type_ == DATASET:
        allowed, close = DATASET_COMPARATORS, ""
    elif grammar.numeric(type_, key):
        allowed, close = NUMERIC_ATTRIBUTE_COMPARATORS, ""
    else:
        allowed, close = STRING_ATTRIBUTE_COMPARATORS, "'"
    if comparator not in allowed:
        raise invalid(f"Invalid comparator '{comparator}' not one of '{_set(allowed)}{close}")


def parse_order_by(item: str, grammar: _Grammar = RUNS) -> tuple[str, str, bool]:
    """``metrics.acc DESC`` -> (type, key, ascending), as MLflow's ``_parse_order_by_string``."""
    try:
        parts = shlex.split(item.replace("`", '"'))
    except ValueError:
        raise invalid(f"Invalid order_by clause '{item}'. Could not be parsed.") from None
    if not parts or len(parts) > 2:
        raise invalid(f"Invalid order_by clause '{item}'. Could not be parsed.")
    ascending = True
    if len(parts) == 2:
        direction = parts[1].lower()
        if direction not in ("asc", "desc"):
            raise invalid(f"Invalid ordering key in order_by clause '{item}'.")
        ascending = direction == "asc"
    valid = EXPERIMENT_ATTRIBUTES if grammar is EXPERIMENTS else RUN_ORDER_ATTRIBUTES
    type_, key = grammar.identifier(parts[0].strip(), valid)
    return type_, key, ascending


# --- runs -> Runyard experiments ----------------------------------------------------------------


def milliseconds(column: Any) -> ColumnElement[int]:
    """A timestamp as MLflow's milliseconds since the Unix epoch (truncated)."""
    return cast(func.floor(func.extract("epoch", column) * 1000), BigInteger)


def run_id_hex() -> ColumnElement[str]:
    return func.replace(cast(Experiment.id, Text), "-", "")


def run_status() -> ColumnElement[str]:
    whens = [(Experiment.status == runyard, mlflow) for runyard, mlflow in MLFLOW_STATUS.items()]
    return case(*whens, else_=literal("RUNNING"))


def run_name() -> ColumnElement[str]:
    return func.coalesce(Experiment.kv_tags[RUN_NAME_TAG].astext, Experiment.name)


def run_user() -> ColumnElement[str]:
    owner = select(User.username).where(User.user_id == Experiment.owner_id).scalar_subquery()
    return func.coalesce(
        Experiment.kv_tags[USER_TAG].astext, owner, cast(Experiment.owner_id, Text)
    )


def artifact_uri() -> ColumnElement[str]:
    experiment = func.coalesce(cast(Experiment.project_id, Text), "0")
    return func.concat("mlflow-artifacts:/", experiment, "/", run_id_hex(), "/artifacts")


def run_attribute(key: str) -> Any:
    """The column or expression of an MLflow run attribute (aliases translated)."""
    key = translate_alias(key)
    if key == "run_id":
        return Experiment.id
    if key == "run_name":
        return run_name()
    if key == "user_id":
        return run_user()
    if key == "status":
        return run_status()
    if key == "start_time":
        return Experiment.started_at
    if key == "end_time":
        return Experiment.ended_at
    if key == "artifact_uri":
        return artifact_uri()
    raise invalid(f"Invalid attribute key '{key}' specified.")


def translate_alias(key: str) -> str:
    if key in ("created", "Created"):
        return "start_time"
    if key in ("run name", "Run name", "Run Name"):
        return "run_name"
    return key


def compare(column: Any, comparator: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if comparator == "=":
        result = column == value
    elif comparator == "!=":
        result = column != value
    elif comparator == "<":
        result = column < value
    elif comparator == "<=":
        result = column <= value
    elif comparator == ">":
        result = column > value
    elif comparator == ">=":
        result = column >= value
    elif comparator == "LIKE":
        result = column.like(value)
    elif comparator == "ILIKE":
        result = column.ilike(value)
    elif comparator == "IN":
        result = column.in_(list(value))
    elif comparator == "NOT IN":
        result = column.not_in(list(value))
    else:  # pragma: no cover - comparators are checked before
        raise invalid(f"Invalid comparator '{comparator}'")
    return result


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _run_id_condition(comparator: str, value: Any) -> ColumnElement[bool]:
    """run_id as 32 hex digits (MLflow's) or dashed: an id is an index lookup, never a scan."""
    if comparator in ("LIKE", "ILIKE"):
        return compare(run_id_hex(), comparator, value)
    values = value if isinstance(value, tuple) else (value,)
    ids = [parsed for parsed in map(_uuid, values) if parsed is not None]
    if comparator in ("=", "IN"):
        return Experiment.id.in_(ids) if ids else false()
    return Experiment.id.not_in(ids) if ids else true()


def _status_condition(comparator: str, value: Any) -> ColumnElement[bool]:
    """MLflow statuses as the Runyard statuses they stand for (the status column's index)."""
    if comparator in ("LIKE", "ILIKE"):
        return compare(run_status(), comparator, value)
    wanted = value if isinstance(value, tuple) else (value,)
    statuses = [runyard for runyard, mlflow in MLFLOW_STATUS.items() if mlflow in wanted]
    if comparator in ("=", "IN"):
        return Experiment.status.in_(statuses) if statuses else false()
    return Experiment.status.not_in(statuses) if statuses else true()


def _time_condition(column: Any, comparator: str, value: int | float) -> ColumnElement[bool]:
    """A comparison of a timestamp's milliseconds; a run without the time does not match."""
    return and_(column.is_not(None), compare(milliseconds(column), comparator, value))


def _dataset_condition(key: str, comparator: str, value: Any) -> ColumnElement[bool]:
    """Any logged dataset input matching: ``experiments.inputs`` holds MLflow ``DatasetInput``s
    (``{"dataset": {"name", "digest", ...}, "tags": [{"key", "value"}]}``)."""
    item = func.jsonb_array_elements(Experiment.inputs).table_valued(column("value", JSONB))
    item = item.alias("input")
    if key == "context":
        tags = func.coalesce(item.c.value["tags"], cast(literal("[]"), JSONB))
        tag = func.jsonb_array_elements(tags).table_valued(column("value", JSONB))
        tag = tag.alias("input_tag")
        return exists(
            select(1)
            .select_from(item)
            .join(tag, true())
            .where(
                tag.c.value["key"].astext == DATASET_CONTEXT_TAG,
                compare(tag.c.value["value"].astext, comparator, value),
            )
        )
    return exists(
        select(1)
        .select_from(item)
        .where(compare(item.c.value["dataset"][key].astext, comparator, value))
    )


def _has_key(document: Any, key: str, present: bool) -> ColumnElement[bool]:
    has: ColumnElement[bool] = document.has_key(key)
    return has if present else not_(has)


def _document_equals(document: Any, key: str, value: str) -> ColumnElement[bool]:
    """``doc ->> key = value`` that the JSONB GIN index can answer: containment of the string,
    or of the number (boolean) the text reads as, for a Runyard-native value (``0.001``)."""
    candidates = [document.contains({key: value})]
    try:
        native = json.loads(value)
    except ValueError:
        native = None
    if isinstance(native, bool) or (isinstance(native, int | float) and math.isfinite(native)):
        candidates.append(document.contains({key: native}))
    return and_(or_(*candidates), document[key].astext == value)


def run_condition(clause: Clause) -> ColumnElement[bool]:
    """One filter comparison as a condition on ``experiments``; a run lacking the metric, param
    or tag compared never matches (MLflow joins them)."""
    type_, key, comparator, value = clause.type, clause.key, clause.comparator, clause.value
    _check_comparator(type_, translate_alias(key), comparator, RUNS)
    if type_ == METRIC:
        return compare(jsonb_number(Experiment.metrics, key), comparator, float(value))
    if type_ in (PARAM, TAG):
        document = Experiment.hyperparameters if type_ == PARAM else Experiment.kv_tags
        if comparator in ("IS NULL", "IS NOT NULL"):
            return _has_key(document, key, comparator == "IS NOT NULL")
        if comparator == "=":
            return _document_equals(document, key, value)
        return compare(document[key].astext, comparator, value)
    if type_ == DATASET:
        return _dataset_condition(key, comparator, value)
    key = translate_alias(key)
    if key == "run_id":
        return _run_id_condition(comparator, value)
    if key == "status":
        return _status_condition(comparator, value)
    if key in ("start_time", "end_time"):
        return _time_condition(run_attribute(key), comparator, value)
    return compare(run_attribute(key), comparator, value)


def run_conditions(filter: str | None) -> list[ColumnElement[bool]]:
    return [run_condition(clause) for clause in parse_filter(filter, RUNS)]


def run_order(order_by: list[str]) -> list[UnaryExpression[Any]]:
    """ORDER BY of a run search: the requested keys, missing values last in either direction
    (MLflow's SQL store), then start_time DESC unless ordered by, then run_id."""
    clauses: list[UnaryExpression[Any]] = []
    seen: set[tuple[str, str]] = set()
    for item in order_by:
        type_, key, ascending = parse_order_by(item, RUNS)
        key = translate_alias(key)
        if type_ == METRIC:
            column: Any = jsonb_number(Experiment.metrics, key)
        elif type_ == PARAM:
            column = Experiment.hyperparameters[key].astext
        elif type_ == TAG:
            column = Experiment.kv_tags[key].astext
        elif type_ == ATTRIBUTE:
            column = run_attribute(key)
        else:
            raise invalid(f"Invalid identifier type '{type_}'")
        if (type_, key) in seen:
            raise invalid(f"`order_by` contains duplicate fields: {order_by}")
        seen.add((type_, key))
        clauses.append((column.asc() if ascending else column.desc()).nulls_last())
    if (ATTRIBUTE, "start_time") not in seen:
        clauses.append(Experiment.started_at.desc().nulls_last())
    if (ATTRIBUTE, "run_id") not in seen:
        clauses.append(Experiment.id.asc())
    return clauses


# --- experiments -> Runyard projects ----------------------------------------------------------


#: The virtual Default experiment ("0") as a row of ``search.search_projects``' union: no
#: project has this id.
DEFAULT_PROJECT_ID = uuid.UUID(int=0)


def _experiment_id(value: str) -> uuid.UUID:
    """A project's id; ``DEFAULT_PROJECT_ID`` for "0" (the virtual Default experiment)."""
    if value == "0":
        return DEFAULT_PROJECT_ID
    parsed = _uuid(value)
    if parsed is None:
        raise invalid(f"Invalid experiment ID '{value}'. Experiment ID must be a valid UUID.")
    return parsed


def project_attribute(key: str, entity: Any = Project) -> Any:
    """The column of ``entity`` (``Project``, or an alias of it) an experiment attribute is."""
    if key == "name":
        return entity.name
    if key == "experiment_id":
        return entity.id
    if key == "creation_time":
        return entity.created_at
    if key == "last_update_time":
        return entity.updated_at
    raise invalid(f"Invalid attribute key '{key}' specified.")


def project_condition(clause: Clause, entity: Any = Project) -> ColumnElement[bool]:
    type_, key, comparator, value = clause.type, clause.key, clause.comparator, clause.value
    if type_ == TAG:
        if comparator in ("IS NULL", "IS NOT NULL"):
            return _has_key(entity.tags, key, comparator == "IS NOT NULL")
        if comparator not in ("=", "!=", "LIKE", "ILIKE"):
            raise invalid(f"Invalid comparator for tag: {comparator}")
        return compare(entity.tags[key].astext, comparator, value)
    if type_ != ATTRIBUTE:
        raise invalid(f"Invalid token type: {type_}")
    if key == "experiment_id":
        if comparator not in ("=", "!=", "IN", "NOT IN"):
            raise invalid(f"Invalid comparator for experiment_id: {comparator}")
        values = value if isinstance(value, tuple) else (value,)
        ids = [_experiment_id(v) for v in values]
        if comparator in ("=", "IN"):
            return entity.id.in_(ids) if ids else false()
        return entity.id.not_in(ids) if ids else true()
    _check_comparator(type_, key, comparator, EXPERIMENTS)
    if key in EXPERIMENT_NUMERIC_ATTRIBUTES:
        if isinstance(value, float):
            raise invalid(f"Invalid value for numeric attribute '{key}': {str(value)!r}")
        return compare(milliseconds(project_attribute(key, entity)), comparator, int(value))
    if comparator not in ("=", "!=", "LIKE", "ILIKE"):
        raise invalid(f"Invalid comparator for string attribute: {comparator}")
    return compare(project_attribute(key, entity), comparator, value)


def project_conditions(filter: str | None, entity: Any = Project) -> list[ColumnElement[bool]]:
    return [project_condition(clause, entity) for clause in parse_filter(filter, EXPERIMENTS)]


def project_order(order_by: list[str], entity: Any = Project) -> list[UnaryExpression[Any]]:
    """MLflow's: ``creation_time DESC, experiment_id ASC`` by default; experiment_id DESC breaks
    the ties of any other ordering. A missing time (the Default experiment's) sorts as the
    oldest."""
    clauses: list[UnaryExpression[Any]] = []
    by_id = False
    for item in order_by or ["creation_time DESC", "experiment_id ASC"]:
        type_, key, ascending = parse_order_by(item, EXPERIMENTS)
        if type_ != ATTRIBUTE:
            raise invalid(f"Invalid order_by entity: {type_}")
        column = project_attribute(key, entity)
        by_id = by_id or key == "experiment_id"
        clauses.append(column.asc().nulls_first() if ascending else column.desc().nulls_last())
    if not by_id:
        clauses.append(entity.id.desc())
    return clauses


__all__ = [
    "DEFAULT_PROJECT_ID",
    "Clause",
    "parse_filter",
    "parse_order_by",
    "project_conditions",
    "project_order",
    "run_conditions",
    "run_order",
]
