from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from runyard.shared.logging import bound, configure_logging, get_logger


@pytest.fixture(autouse=True)
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_logs_are_json_lines_with_service_and_bound_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="demo", json=True)
    log = get_logger("t")
    with bound(request_id="req-1"), bound(event_id="evt-9"):
        log.info("demo.thing.done", count=3)
    log.info("demo.after")
    first, second = (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())
    assert first["event"] == "demo.thing.done"
    assert first["service"] == "demo"
    assert first["request_id"] == "req-1"
    assert first["event_id"] == "evt-9"
    assert first["count"] == 3
    assert "request_id" not in second


def test_each_line_names_the_instance_when_one_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="webhooks", json=True, instance="webhooks-2")
    get_logger("t").info("webhooks.delivery.sent")
    line = json.loads(capsys.readouterr().out)
    assert (line["service"], line["instance"]) == ("webhooks", "webhooks-2")
