from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from runyard.shared.logging import bound, configure_logging, get_logger
from runyard.shared.redaction import (
    REDACTED,
    apply_value_rules,
    may_hold_secret,
    redact,
    redact_text,
)


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


# --- secrets never reach a log line -----------------------------------------------------------

JWT = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.eyJzdWIiOiIxMjMiLCJ0eXAiOiJhY2Nlc3MifQ"
    ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)
API_KEY = "ry_" + "A1b2C3d4E5" * 3 + "zZ9yY8"
WHSEC = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LTMyLWJ5dGVzIQ=="
TOTP_URI = "otpauth://totp/Runyard:ada?secret=JBSWY3DPEHPK3PXPJBSWY3DP&issuer=Runyard"
SLACK = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/xXsEcReTsLaCkPaThXx"
TEAMS = "https://contoso.webhook.office.com/webhookb2/0000-aaaa@1111/IncomingWebhook/s3cr3tTeams/x"
FLOW = (
    "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke"
    "?api-version=2016-06-01&sp=%2Ftriggers&sv=1.0&sig=FlowSigFlowSig123"
)


#: (text, the part that must disappear)
BY_VALUE = [
    (f"issued {TOTP_URI} to ada", "JBSWY3DPEHPK3PXPJBSWY3DP"),
    (f"token {JWT}", JWT),
    ("Authorization: Bearer opaque-token-0123456789", "opaque-token-0123456789"),
    (f"key={API_KEY}", API_KEY),
    (f"using {API_KEY}.", API_KEY),
    (f"signing with {WHSEC}", "c2VjcmV0LXNpZ25pbmcta2V5"),
    (f"posting to {SLACK}", "xXsEcReTsLaCkPaThXx"),
    (f"posting to {SLACK}", "T0AAAAAAA/B0BBBBBBB"),
    (f"posting to {TEAMS}", "s3cr3tTeams"),
    (f"posting to {FLOW}", "FlowSigFlowSig123"),
    ("GET /unsubscribe?token=tok3n-value&x=1", "tok3n-value"),
    ("https://h.example/cb?code=abc123&state=s", "abc123"),
    ("https://h.example/x?api_key=k3yk3y&access_token=t0k3n", "k3yk3y"),
    ("https://h.example/x?api_key=k3yk3y&access_token=t0k3n", "t0k3n"),
    ("https://h.example/x?X-Amz-Signature=deadbeef01", "deadbeef01"),
    ("postgresql+asyncpg://runyard_auth:hunter2-db@db:5432/runyard", "hunter2-db"),
    (
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGpk\n-----END PRIVATE KEY-----",
        "MC4CAQAwBQYDK2VwBCIEIGpk",
    ),
]


@pytest.mark.parametrize(("text", "secret"), BY_VALUE)
def test_secret_looking_values_are_redacted_wherever_they_appear(text: str, secret: str) -> None:
    assert secret in text
    redacted = redact_text(text)
    assert secret not in redacted
    assert REDACTED in redacted


@pytest.mark.parametrize(("text", "secret"), BY_VALUE)
def test_the_fast_path_lets_every_secret_through_to_the_rules(text: str, secret: str) -> None:
    """``redact_text`` skips the rules for text that ``may_hold_secret`` rules out: it must
    never rule out one that a rule would redact, whatever its case."""
    for variant in (text, text.upper(), text.lower()):
        if apply_value_rules(variant) != variant:
            assert may_hold_secret(variant)


@pytest.mark.parametrize(
    "text",
    [
        "experiment.run.logged",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "webhooks.delivery.sent status 200",
        "2026-12-06T07:11:13.675578Z",
    ],
)
def test_the_fast_path_skips_ordinary_log_values(text: str) -> None:
    assert not may_hold_secret(text)
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "ry_AbCd1234",  # the displayed prefix of a key
        "https://hooks.example.com/services/not-slack",
        "api_key_id=1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "webhooks.delivery.sent status=200",
        "http://127.0.0.1:8101/internal/v1/sessions/42",
        'Bearer realm="runyard"',
    ],
)
def test_ordinary_values_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_fields_named_as_secrets_lose_their_values_and_descriptive_ones_stay() -> None:
    record = {
        "password": "hunter22",
        "new_password": "hunter23",
        "refresh_token": "opaque",
        "otpauth_uri": "otpauth://totp/x",
        "secret": "JBSWY3DP",
        "backup_codes": ["a1", "b2"],
        "code": "123456",
        "key": "anything",
        "authorization": "Basic YWRhOnB3",
        "api_key_id": "k-1",
        "key_prefix": "ry_AbCd1234",
        "token_type": "bearer",
        "password_changed_at": "2025-01-01",
        "username": "ada",
    }
    assert redact(record) == {
        **{k: REDACTED for k in list(record)[:9]},
        "api_key_id": "k-1",
        "key_prefix": "ry_AbCd1234",
        "token_type": "bearer",
        "password_changed_at": "2025-01-01",
        "username": "ada",
    }


def test_a_named_pair_keeps_its_name_and_is_judged_by_it() -> None:
    """MLflow's params, tags and metrics are ``{"key": name, "value": ...}``: the name is not a
    secret (a lone ``key`` field still is), the value is one when the name says so."""
    body = {
        "run_id": "r1",
        "metrics": [{"key": "val_loss", "value": 0.5, "timestamp": 1, "step": 3}],
        "params": [
            {"key": "lr", "value": "0.01"},
            {"key": "db_password", "value": "hunter22"},
            {"key": "hf_token", "value": "hf_abcdef"},
            {"key": "api_key_id", "value": "k-1"},
            {"key": "dsn", "value": "postgresql://ada:hunter22@db/x"},
        ],
        "tags": [{"key": "mlflow.user", "value": "ada"}],
    }
    assert redact(body) == {
        "run_id": "r1",
        "metrics": [{"key": "val_loss", "value": 0.5, "timestamp": 1, "step": 3}],
        "params": [
            {"key": "lr", "value": "0.01"},
            {"key": "db_password", "value": REDACTED},
            {"key": "hf_token", "value": REDACTED},
            {"key": "api_key_id", "value": "k-1"},
            {"key": "dsn", "value": f"postgresql://ada:{REDACTED}@db/x"},
        ],
        "tags": [{"key": "mlflow.user", "value": "ada"}],
    }
    # MLflow's set-tag and log-param bodies are one pair
    assert redact({"run_id": "r1", "key": "secret", "value": "s3"}) == {
        "run_id": "r1",
        "key": "secret",
        "value": REDACTED,
    }
    # a name holding a secret-looking value is redacted by value; a lone key is a secret
    assert redact({"key": "Bearer abcdefgh12345", "value": 1}) == {
        "key": f"Bearer {REDACTED}",
        "value": 1,
    }
    assert redact({"key": "anything", "name": "x"}) == {"key": REDACTED, "name": "x"}


def test_custom_header_values_are_redacted_and_their_names_kept() -> None:
    webhook = {"url": SLACK, "settings": {"headers": {"X-Team-Auth": "opaque-value-1"}}}
    assert redact(webhook) == {
        "url": "https://hooks.slack.com/" + REDACTED,
        "settings": {"headers": {"X-Team-Auth": REDACTED}},
    }


def test_no_secret_reaches_a_structlog_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(service="demo", json=True)
    log = get_logger("t")
    with bound(request_id=API_KEY):
        log.info(f"sent to {SLACK}", url=TEAMS, totp=TOTP_URI, headers={"X-Token": "hv-secret"})
        log.warning("demo.failed", error=RuntimeError(f"refused {JWT}"), webhook_id="w-1")
        try:
            raise ValueError(f"bad secret {WHSEC}")
        except ValueError:
            log.exception("demo.crashed", password="hunter22")
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.strip().splitlines()]
    for secret in (API_KEY, "xXsEcReTsLaCkPaThXx", "s3cr3tTeams", "JBSWY3DP", "hv-secret", JWT):
        assert secret not in out
    assert "c2VjcmV0LXNpZ25pbmcta2V5" not in out
    assert "hunter22" not in out
    assert lines[1]["webhook_id"] == "w-1"
    assert "Traceback" in lines[2]["exception"]
    assert lines[2]["password"] == REDACTED


def test_no_secret_reaches_a_standard_library_log_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    library = logging.getLogger("demo.library")
    library.addHandler(handler)
    library.propagate = False
    try:
        configure_logging(service="demo", json=True)
        library.warning("connecting to %s with %r", f"https://x.example/?token={API_KEY}", JWT)
        try:
            raise ConnectionError(f"refused {SLACK}")
        except ConnectionError:
            library.exception("Exception in ASGI application")
    finally:
        library.removeHandler(handler)
    out = stream.getvalue()
    assert "Exception in ASGI application" in out and "Traceback" in out
    for secret in (API_KEY, JWT, "xXsEcReTsLaCkPaThXx"):
        assert secret not in out
