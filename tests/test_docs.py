"""The documentation stays true to the code: event types, examples, producers, settings.

Fast and offline: nothing here starts a database, a broker or a service.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import SecretStr
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from runyard.shared.contracts import all_contracts
from runyard.shared.events import EventPayload, parse_event
from runyard.shared.settings import ServiceSettings

DOCS = Path(__file__).resolve().parents[1] / "docs"
EVENTS_MD = (DOCS / "events.md").read_text()
OPERATIONS_MD = (DOCS / "operations.md").read_text()

SERVICES = ("auth", "experiments", "notifications", "webhooks", "gateway")
STATUSES = ("live", "declared", "planned", "not on Kafka")


@cache
def generator() -> ModuleType:
    """``docs/gen_events.py``, which renders the field tables and examples of events.md."""
    spec = importlib.util.spec_from_file_location("runyard_docs_gen_events", DOCS / "gen_events.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def registered_types() -> set[str]:
    return {event_type for event_type, _version in all_contracts()}


def contract(event_type: str) -> type[EventPayload]:
    return max(
        (model for (t, _v), model in all_contracts().items() if t == event_type),
        key=lambda model: model.version,
    )


def event_sections() -> dict[str, str]:
    """``### `<type>` `` heading -> the text up to the next heading."""
    headings = list(re.finditer(r"^### `(?P<type>[a-z0-9_.]+)`$", EVENTS_MD, re.M))
    sections = {}
    for heading, following in zip(headings, [*headings[1:], None], strict=True):
        end = following.start() if following else len(EVENTS_MD)
        body = EVENTS_MD[heading.end() : end]
        sections[heading["type"]] = re.split(r"^## ", body, flags=re.M)[0]
    return sections


def json_blocks(text: str) -> list[str]:
    return re.findall(r"^```json\n(.*?)^```$", text, re.S | re.M)


def bullet(section: str, label: str) -> str:
    """The text of the ``- <label>: ...`` bullet, continuation lines included."""
    found = re.search(rf"^- {label}:(.*(?:\n  .*)*)", section, re.M)
    assert found, f"no '- {label}:' line"
    return found[1]


def service_names(text: str) -> set[str]:
    return {name for name in re.findall(r"`(\w+)`", text) if name in SERVICES}


@cache
def asyncapi(service: str) -> dict[str, set[str]]:
    """What the service's ``/asyncapi.json`` says it sends and receives (no server needed)."""
    main = importlib.import_module(f"runyard.{service}.main")
    config = importlib.import_module(f"runyard.{service}.config")
    app = main.create_app(config.Settings(environment="test"))
    route = next(r for r in app.routes if getattr(r, "path", None) == "/asyncapi.json")
    document: dict[str, Any] = asyncio.run(route.endpoint())
    found: dict[str, set[str]] = {"send": set(), "receive": set()}
    for operation in document["operations"].values():
        channel = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        found[operation["action"]].add(document["channels"][channel]["address"])
    return found


def services_that(action: str, event_type: str) -> set[str]:
    return {s for s in SERVICES if event_type in asyncapi(s)[action]}


# --- events.md --------------------------------------------------------------------------------


def test_every_registered_event_type_has_its_own_section_in_events_md() -> None:
    sections = event_sections()
    assert sorted(registered_types() - sections.keys()) == []
    assert sorted(sections.keys() - registered_types()) == []


@pytest.mark.parametrize("block", json_blocks(EVENTS_MD), ids=lambda b: json.loads(b)["type"])
def test_every_json_example_in_events_md_is_a_cloud_event_valid_for_its_contract(
    block: str,
) -> None:
    event, payload = parse_event(block)
    assert isinstance(payload, contract(event.type))
    assert event.dataschema == contract(event.type).dataschema()
    assert event.source.startswith("/runyard/")


def test_each_event_section_shows_exactly_one_example_of_its_own_type() -> None:
    for event_type, section in event_sections().items():
        blocks = json_blocks(section)
        assert len(blocks) == 1, event_type
        assert json.loads(blocks[0])["type"] == event_type


def test_generated_field_tables_and_examples_are_up_to_date() -> None:
    # On failure run: uv run python docs/gen_events.py
    assert generator().problems(EVENTS_MD) == []


def test_producers_statuses_and_consumers_in_events_md_match_the_services() -> None:
    for event_type, section in event_sections().items():
        producer_line = bullet(section, "Producer")
        producer = re.match(r" `(\w+)` .*— \*\*(.+?)\*\*", producer_line)
        assert producer, f"{event_type}: producer line {producer_line!r}"
        name, status = producer.groups()
        assert status in STATUSES, event_type
        assert name == generator().producer_of(contract(event_type)), event_type
        senders = services_that("send", event_type)
        assert senders == ({name} if status in ("live", "declared") else set()), event_type
        consumers = service_names(bullet(section, "Consumers"))
        assert consumers == services_that("receive", event_type), event_type


def test_the_catalog_table_agrees_with_the_sections() -> None:
    catalog = EVENTS_MD.split("\n## Catalog\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9_.]+)` \| (\w+) \| ([\w ]+) \| (.*) \|$", catalog, re.M)
    assert {row[0] for row in rows} == registered_types()
    for event_type, producer, status, consumers in rows:
        section = event_sections()[event_type]
        assert f"`{producer}`" in bullet(section, "Producer"), event_type
        assert f"**{status}**" in bullet(section, "Producer"), event_type
        listed = {c.strip() for c in consumers.split(",")} - {"—"}
        assert listed == services_that("receive", event_type), event_type


@cache
def source_of(service: str) -> str:
    """The service package's code, except main.py (which only declares what it publishes)."""
    package = Path(importlib.import_module(f"runyard.{service}").__file__ or "").parent
    return "\n".join(p.read_text() for p in sorted(package.rglob("*.py")) if p.name != "main.py")


@cache
def constructed_in(service: str) -> frozenset[str]:
    """The class names the service's code calls (``Name(``)."""
    return frozenset(re.findall(r"\b([A-Z]\w*)\(", source_of(service)))


def test_live_events_are_built_by_their_producer_and_the_others_by_no_service() -> None:
    for event_type, section in event_sections().items():
        producer = re.match(r" `(\w+)` .*— \*\*(.+?)\*\*", bullet(section, "Producer"))
        assert producer
        name, status = producer.groups()
        builders = {s for s in SERVICES if contract(event_type).__name__ in constructed_in(s)}
        # "not on Kafka" types (webhook.test) are built by their producer, never published
        expected = {name} if status in ("live", "not on Kafka") else set()
        assert builders == expected, event_type


# --- operations.md ----------------------------------------------------------------------------


def service_settings() -> dict[str, type[BaseSettings]]:
    return {s: importlib.import_module(f"runyard.{s}.config").Settings for s in SERVICES}


def env_names(settings: type[BaseSettings]) -> list[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper() for name in settings.model_fields]


def shown(default: Any) -> str:
    """How operations.md writes a default in its settings tables."""
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "unset"
    if isinstance(default, SecretStr):
        default = default.get_secret_value()
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if default == "":
        return "empty"
    return f"`{default}`"


def documented_defaults() -> dict[str, str]:
    """Variable -> default cell, from every ``| `NAME` | default | ... |`` table row."""
    rows = re.findall(r"^\| `([A-Z0-9_<>]+)` \| ([^|]*) \|", OPERATIONS_MD, re.M)
    return {name: cell.strip() for name, cell in rows}


def test_operations_md_names_every_setting_of_every_service() -> None:
    missing = [
        name
        for settings in service_settings().values()
        for name in env_names(settings)
        if not re.search(rf"\b{name}\b", OPERATIONS_MD)
    ]
    assert missing == []


def test_every_setting_has_a_row_in_operations_md_with_the_default_of_the_code() -> None:
    documented = documented_defaults()
    expected = {
        f"<PREFIX>{name.upper()}": shown(field.get_default(call_default_factory=True))
        for name, field in ServiceSettings.model_fields.items()
    }
    for settings in service_settings().values():
        prefix = str(settings.model_config.get("env_prefix", "")).upper()
        for name, field in settings.model_fields.items():
            if name not in ServiceSettings.model_fields:
                default = field.get_default(call_default_factory=True)
                expected[f"{prefix}{name.upper()}"] = shown(default)
    assert {name: documented.get(name) for name in expected} == expected


# --- api/ -------------------------------------------------------------------------------------


@cache
def api_generator() -> ModuleType:
    """``docs/gen_api.py``, which writes the merged OpenAPI and the AsyncAPI documents."""
    spec = importlib.util.spec_from_file_location("runyard_docs_gen_api", DOCS / "gen_api.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_api_and_event_documents_in_docs_api_match_the_code() -> None:
    # A change to the public surface shows in the diff of docs/api/; on failure run:
    # uv run python docs/gen_api.py
    assert api_generator().problems() == []
