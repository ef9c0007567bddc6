"""The alert pages on their own: how the rule form becomes the API's rule for every kind and
scope (and an API rule the form again), how the API's 422 errors land at the form's fields,
and that the pages, like every page, send a signed-out browser to sign in and refuse a POST
without the session's token before the API is asked. With the API: tests/console."""

from __future__ import annotations

import pytest

from runyard.console.pages.alerts import (
    KIND_FIELDS,
    blank_form,
    describe,
    form_errors,
    form_of,
    rule_body,
)
from runyard.console.render import make_templates
from runyard.console.session import SESSION_COOKIE
from services.console.tests.test_pages import sealed_session

EXPERIMENT = "00000000-0000-0000-0000-0000000000e1"


@pytest.mark.parametrize(
    ("given", "condition"),
    [
        (
            {"kind": "threshold", "metric": "val_accuracy", "op": ">=", "value": "0.95"},
            {"kind": "threshold", "metric": "val_accuracy", "op": ">=", "value": 0.95},
        ),
        ({"kind": "not_finite", "metric": "loss"}, {"kind": "not_finite", "metric": "loss"}),
        (
            {"kind": "plateau", "metric": "val_loss", "epochs": "5", "min_delta": "", "mode": ""},
            {"kind": "plateau", "metric": "val_loss", "epochs": 5},
        ),
        (
            {"kind": "divergence", "metric": "val_loss", "epochs": "5", "percent": "30"},
            {"kind": "divergence", "metric": "val_loss", "epochs": 5, "percent": 30.0},
        ),
        (
            {"kind": "gap", "gap": "0.2", "direction": "train_minus_val"},
            {
                "kind": "gap",
                "val_metric": "val_loss",
                "train_metric": "train_loss",
                "direction": "train_minus_val",
                "gap": 0.2,
            },
        ),
        (
            # the form's default operator alone says nothing: a plain lifecycle rule
            {"kind": "lifecycle", "event": "failed", "value": "", "metric": ""},
            {"kind": "lifecycle", "event": "failed"},
        ),
        (
            {"kind": "lifecycle", "event": "completed", "metric": "acc", "op": "<", "value": "0.9"},
            {"kind": "lifecycle", "event": "completed", "metric": "acc", "op": "<", "value": 0.9},
        ),
    ],
)
def test_each_kind_sends_its_own_fields_as_numbers(
    given: dict[str, str], condition: dict[str, object]
) -> None:
    body = rule_body(blank_form(name="r", **given))
    assert body["condition"] == condition
    assert set(body["condition"]) - {"kind"} <= set(KIND_FIELDS[given["kind"]])


def test_scopes_send_the_field_of_their_type_and_text_that_is_no_number_goes_as_typed() -> None:
    form = blank_form(name=" r ", kind="divergence", metric="m", epochs="five", percent="x")
    form |= {"scope_type": "experiment", "experiment_id": EXPERIMENT, "filter": "ignored"}
    form |= {"rearm": "on", "enabled": "", "cooldown_s": "60", "severity": "critical"}
    body = rule_body(form)
    assert body["name"] == "r"
    assert body["condition"] == {
        "kind": "divergence",
        "metric": "m",
        "epochs": "five",
        "percent": "x",
    }
    assert body["scope"] == {"type": "experiment", "experiment_id": EXPERIMENT}
    assert (body["rearm"], body["enabled"], body["cooldown_s"]) == (True, False, 60)
    assert rule_body(blank_form(scope_type="filter", filter="tags = 'a'"))["scope"] == {
        "type": "filter",
        "filter": "tags = 'a'",
    }
    assert rule_body(blank_form())["scope"] == {"type": "all"}


def test_an_api_rule_fills_the_edit_form_and_comes_back_the_same() -> None:
    rule = {
        "id": "r1",
        "name": "diverging",
        "condition": {"kind": "divergence", "metric": "val_loss", "epochs": 5, "percent": 38.0},
        "scope": {"type": "project", "project_id": "p1"},
        "severity": "info",
        "cooldown_s": 600,
        "rearm": True,
        "enabled": False,
    }
    form = form_of(rule)
    assert form["kind"] == "divergence" and form["percent"] == "38.0"
    assert form["scope_type"] == "project" and form["project_id"] == "p1"
    body = rule_body(form)
    assert body["condition"] == rule["condition"] and body["scope"] == rule["scope"]
    assert (body["severity"], body["cooldown_s"], body["rearm"], body["enabled"]) == (
        "info",
        600,
        True,
        False,
    )
    assert describe(rule) == "val_loss rose > 38.0 % over 5 epochs"


def test_the_apis_errors_land_at_the_forms_fields() -> None:
    problem = {
        "status": 422,
        "errors": [
            {"loc": ["body", "condition", "divergence", "percent"], "msg": "Input should be > 0"},
            {"loc": ["body", "condition", "threshold", "op"], "msg": "Input should be '>'"},
            {"loc": ["body", "condition", "lifecycle"], "msg": "Value error, go together"},
            {"loc": ["body", "condition"], "msg": "Input tag 'nope' does not match"},
            {"loc": ["body", "scope", "filter", "filter"], "msg": "Invalid filter: at 3"},
            {"loc": ["body", "scope", "project", "project_id"], "msg": "No such project"},
            {"loc": ["body", "cooldown_s"], "msg": "Input should be <= 604800"},
            {"loc": ["body", "condition", "gap", "gap"], "msg": "Input should be >= 0"},
        ],
    }
    assert form_errors(problem) == {
        "percent": ["Input should be > 0"],
        "op": ["Input should be '>'"],
        "kind": ["go together", "Input tag 'nope' does not match"],
        "filter": ["Invalid filter: at 3"],
        "project_id": ["No such project"],
        "cooldown_s": ["Input should be <= 604800"],
        "gap": ["Input should be >= 0"],
    }
    assert form_errors({"status": 409, "field": "name", "detail": "taken"}) == {"name": ["taken"]}


def test_the_form_marks_the_field_an_error_names_and_ties_the_message_to_it() -> None:
    template = make_templates().get_template("alert_rule_form.html")
    html = template.render(
        form=blank_form(kind="divergence"),
        errors={"percent": ["Input should be greater than 0"]},
        shown=["percent"],
        rule_id="",
        kinds={"threshold": "T", "divergence": "D"},
        kind_fields={},
        field_kinds={"percent": "divergence"},
        scopes={"all": "All"},
        severities=("warning",),
        operators=(">",),
        projects={},
        path="/alerts/rules/new",
        user=None,
        csrf_token="t",
    )
    assert 'id="f-percent" name="percent" value="" inputmode="decimal"' in html
    assert 'aria-invalid="true" aria-describedby="f-percent-error"' in html
    assert 'id="f-percent-error">Input should be greater than 0<' in html
    assert 'data-kinds="divergence"' in html


@pytest.mark.parametrize("path", ["/alerts", "/alerts/rules", "/alerts/rules/new"])
async def test_a_signed_out_browser_is_sent_to_sign_in(client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


@pytest.mark.parametrize(
    "path",
    [
        "/alerts/rules",
        f"/alerts/rules/{EXPERIMENT}",
        f"/alerts/rules/{EXPERIMENT}/enabled",
        f"/alerts/rules/{EXPERIMENT}/delete",
        f"/alerts/rules/{EXPERIMENT}/backtest",
    ],
)
async def test_a_post_without_the_sessions_token_is_refused_before_the_api_is_asked(
    client, settings, path: str
) -> None:
    """Nothing listens on the API URL: a refusal that asked the API would be a 502."""
    client.cookies.set(SESSION_COOKIE, sealed_session(settings))
    response = await client.post(path, data={"csrf_token": "forged", "enabled": "true"})
    assert response.status_code == 403
    assert "Form expired" in response.text


RULE = {
    "id": EXPERIMENT,
    "name": "accurate <enough>",
    "describe": "val_accuracy >= 0.7",
    "where": "all my experiments",
    "severity": "critical",
    "enabled": True,
    "rearm": False,
    "cooldown_s": 0,
}


def test_the_rules_list_deletes_through_a_confirmation_page_not_at_once() -> None:
    """The list's Delete is a link to the confirmation page (a GET, works without script): no
    form on the list posts to the delete route."""
    html = (
        make_templates()
        .get_template("alert_rules.html")
        .render(items=[RULE], kinds={}, notice="", path="/alerts/rules", user=None, csrf_token="t")
    )
    assert f'action="/alerts/rules/{EXPERIMENT}/delete"' not in html
    assert (
        f'<a href="/alerts/rules/{EXPERIMENT}/delete" class="small danger-link" '
        'aria-label="Delete rule accurate &lt;enough&gt;">Delete…</a>'
    ) in html
    assert '<span class="severity sev-critical">critical</span>' in html


def test_the_confirmation_page_posts_the_delete_with_the_sessions_token_or_cancels() -> None:
    html = (
        make_templates()
        .get_template("alert_delete.html")
        .render(rule=RULE, path=f"/alerts/rules/{EXPERIMENT}/delete", user=None, csrf_token="tok")
    )
    form = html.split(f'<form method="post" action="/alerts/rules/{EXPERIMENT}/delete"', 1)[1]
    form = form.split("</form>", 1)[0]
    assert '<input type="hidden" name="csrf_token" value="tok">' in form
    assert (
        '<button type="submit" class="danger" id="confirm-delete">'
        "Delete rule accurate &lt;enough&gt;</button>"
    ) in form
    assert '<a class="button" href="/alerts/rules" id="cancel-delete">Cancel</a>' in form
    assert "val_accuracy &gt;= 0.7" in html and "cannot be restored" in html


async def test_the_confirmation_page_sends_a_signed_out_browser_to_sign_in(client) -> None:
    path = f"/alerts/rules/{EXPERIMENT}/delete"
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"
