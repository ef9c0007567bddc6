"""MLflow's request limits (``mlflow.utils.validation``), checked before anything is written, so
that a refused request changes nothing; plus the limits Runyard's storage adds (documented in
``docs/mlflow.md``)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

from runyard.experiments.mlflow.errors import invalid
from runyard.experiments.projects.schemas import MAX_TAGS

MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_ENTITIES_PER_BATCH = 1000
MAX_DATASETS_PER_BATCH = 1000
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_ENTITY_KEY_LENGTH = 250
MAX_EXPERIMENT_TAG_KEY_LENGTH = 250
MAX_DATASET_NAME_SIZE = 500
MAX_DATASET_DIGEST_SIZE = 36
MAX_DATASET_SOURCE_SIZE = 65535
MAX_DATASET_SCHEMA_SIZE = 1048575
MAX_DATASET_PROFILE_SIZE = 16777215
MAX_INPUT_TAG_KEY_SIZE = 255
MAX_INPUT_TAG_VALUE_SIZE = 500
#: MLflow's (``mlflow_metrics.key``); names over 100 characters stay out of Runyard's epoch view
MAX_METRIC_KEY_LENGTH = 250
#: Runyard: experiment (project) names are 255 characters, tag values 5,000
MAX_EXPERIMENT_NAME_LENGTH = 255
MAX_EXPERIMENT_TAG_VAL_LENGTH = 5000

_NAME = re.compile(r"^[/\w.\- :]*$")
BAD_CHARACTERS = (
    "Names may only contain alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ),"
    " colon(:) and slashes (/)."
)


def _name(name: str | None, path: str, what: str) -> str:
    if name is None or name == "":
        raise invalid(
            f"Missing value for required parameter '{path}'. A key name must be provided."
        )
    if not _NAME.match(name):
        raise invalid(f"Invalid value {name!r} for parameter '{path}' supplied: {BAD_CHARACTERS}")
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith("..") or norm.startswith("/"):
        raise invalid(
            f"Invalid value {name!r} for parameter '{path}' supplied: Names may be treated as "
            "files in certain cases, and must not resolve to other names when treated as such. "
            f"This name would resolve to {norm!r}"
        )
    return name


def length(what: str, limit: int, value: str | None) -> None:
    if value is not None and len(value) > limit:
        raise invalid(f"'{what}' exceeds the maximum length of {limit} characters")


def metric_value(value: Any, path: str) -> float:
    """A double; MLflow sends NaN and infinities as the strings ``NaN``/``Infinity``. They are
    kept in the metric log (Runyard's epochs take finite values only)."""
    if isinstance(value, bool) or value is None:
        raise invalid(f"Invalid value {value!r} for parameter '{path}' supplied")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise invalid(
            f"Invalid value {value!r} for parameter '{path}' supplied: "
            "Please specify value as a valid double (64-bit floating point)"
        ) from None


def metric(key: str | None, value: Any, timestamp: Any, step: Any, path: str) -> float:
    _name(key, f"{path}name" if path else "key", "metric")
    assert key is not None
    length("Metric name", MAX_METRIC_KEY_LENGTH, key)
    number = metric_value(value, f"{path}value" if path else "value")
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise invalid(
            f"Invalid value {timestamp!r} for parameter '{path}timestamp' supplied: metric "
            f"{key!r}. Timestamp must be a nonnegative long (64-bit integer)"
        )
    if not isinstance(step, int) or isinstance(step, bool) or not -(2**63) <= step < 2**63:
        raise invalid(
            f"Invalid value {step!r} for parameter '{path}step' supplied: metric {key!r}. "
            "Step must be a long (64-bit integer)"
        )
    return number


def param(key: str | None, value: str | None, path: str = "") -> None:
    _name(key, f"{path}key", "param")
    length("Param key", MAX_ENTITY_KEY_LENGTH, key)
    if value is None:
        raise invalid(f"Missing value for required parameter '{path}value'.")
    length("Param value", MAX_PARAM_VAL_LENGTH, value)


def tag(key: str | None, value: str | None, path: str = "") -> None:
    _name(key, f"{path}key", "tag")
    length(f"{path}key", MAX_ENTITY_KEY_LENGTH, key)
    length(f"{path}value", MAX_TAG_VAL_LENGTH, value)


def experiment_tag(key: str | None, value: str | None) -> None:
    _name(key, "key", "tag")
    length("key", MAX_EXPERIMENT_TAG_KEY_LENGTH, key)
    length("value", MAX_EXPERIMENT_TAG_VAL_LENGTH, value)


def experiment_tags(tags: dict[str, str]) -> None:
    for key, value in tags.items():
        experiment_tag(key, value)
    if len(tags) > MAX_TAGS:
        raise invalid(f"An experiment may have at most {MAX_TAGS} tags")


def experiment_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise invalid(f"Invalid experiment name: '{name or ''}'")
    length("name", MAX_EXPERIMENT_NAME_LENGTH, name.strip())
    return name.strip()


def batch_limit(what: str, limit: int, count: int) -> None:
    if count > limit:
        raise invalid(
            f"A batch logging request can contain at most {limit} {what}. Got {count} {what}. "
            f"Please split up {what} across multiple requests and try again."
        )


def batch(metrics: Sequence[Any], params: Sequence[Any], tags: Sequence[Any]) -> None:
    batch_limit("metrics", MAX_METRICS_PER_BATCH, len(metrics))
    batch_limit("params", MAX_PARAMS_TAGS_PER_BATCH, len(params))
    batch_limit("tags", MAX_PARAMS_TAGS_PER_BATCH, len(tags))
    batch_limit(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        len(metrics) + len(params) + len(tags),
    )


def unique_param_keys(keys: Sequence[str]) -> None:
    seen: set[str] = set()
    dupes = [k for k in keys if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    if dupes:
        raise invalid(
            f"Duplicate parameter keys have been submitted: {dupes}. Please ensure the request "
            "contains only one param value per param key."
        )
