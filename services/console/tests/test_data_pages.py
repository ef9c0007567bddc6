"""The data pages on their own (projects, artifacts, campaigns, datasets): how the API's 422
errors land at the fields of a form, how the search-space rows become the API's search space,
the artifact tree of one folder, the best runs of a project; and that the new pages, like every
page, send a signed-out browser to sign in and refuse a POST without the session's token."""

from __future__ import annotations

import re
from typing import Any

import pytest

from runyard.console.pages.artifacts import crumbs, folder_view, is_image, is_text, raw_url
from runyard.console.pages.campaigns import rekey, row_errors, search_space
from runyard.console.pages.projects import best_runs, field_errors
from runyard.console.session import SESSION_COOKIE
from services.console.tests.test_pages import sealed_session


def test_422_errors_are_keyed_by_field_without_the_body_and_union_tags() -> None:
    problem = {
        "status": 422,
        "errors": [
            {"loc": ["body", "budget", "max_trials"], "msg": "Input should be >= 1"},
            {
                "loc": ["body", "search_space", "lr", "float"],
                "msg": "Value error, low must not be greater than high",
            },
            {"loc": ["body", "search_space", "lr", "float", "low"], "msg": "not a number"},
        ],
    }
    assert field_errors(problem) == {
        "budget.max_trials": ["Input should be >= 1"],
        "search_space.lr": ["low must not be greater than high"],
        "search_space.lr.low": ["not a number"],
    }
    # a name clash names its field; a problem without either goes to the form as a whole
    assert field_errors({"status": 409, "field": "name", "detail": "taken"}) == {"name": ["taken"]}
    assert field_errors({"status": 400, "title": "Bad Request"}) == {"": ["Bad Request"]}
    assert rekey({"budget.max_trials": ["x"], "budget": ["y"], "name": ["z"]}) == {
        "max_trials": ["x", "y"],
        "name": ["z"],
    }


def row(**fields: str) -> dict[str, str]:
    return {k: fields.get(k, "") for k in ("name", "type", "low", "high", "step", "choices", "log")}


def test_search_space_rows_become_the_apis_search_space() -> None:
    rows = [
        row(name="lr", type="float", low="1e-4", high="0.1", log="on"),
        row(name="batch", type="int", low="16", high="128", step="16"),
        row(name="optimizer", type="categorical", choices="adam, sgd ,0.5"),
        row(),  # blank: left out
        row(name="depth", type="int", low="three", high="8"),
    ]
    space, problems = search_space(rows)
    assert problems == {}
    assert space == {
        "lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
        "batch": {"type": "int", "low": 16, "high": 128, "step": 16, "log": False},
        "optimizer": {"type": "categorical", "choices": ["adam", "sgd", 0.5]},
        # text that is no number goes as typed: the API's message about it is shown
        "depth": {"type": "int", "low": "three", "high": 8, "log": False},
    }


def test_rows_the_api_cannot_see_are_refused_by_the_form_and_errors_find_their_row() -> None:
    rows = [row(name="lr", type="float", low="1"), row(low="2"), row(name="lr", type="int")]
    _space, problems = search_space(rows)
    assert problems == {
        "row1.name": ["give the parameter a name"],
        "row2.name": ["'lr' is in the search space twice"],
    }
    errors = {**problems, "search_space.lr": ["low must not be greater than high"]}
    errors["search_space.lr.high"] = ["Field required"]
    assert row_errors(rows[:2], errors) == [
        {"": ["low must not be greater than high"], "high": ["Field required"]},
        {"name": ["give the parameter a name"]},
    ]


def test_one_folder_of_the_artifact_tree_sums_what_lies_below_each_subfolder() -> None:
    artifacts = [
        {"path": "plots/a/loss.png", "size": 100},
        {"path": "plots/acc.png", "size": 50},
        {"path": "plots/b/x.txt", "size": 7},
        {"path": "plots/a/f1.png", "size": 1},
    ]
    view = folder_view(artifacts, "plots/")
    assert [(f["name"], f["files"], f["size"], f["prefix"]) for f in view["folders"]] == [
        ("a", 2, 101, "plots/a/"),
        ("b", 1, 7, "plots/b/"),
    ]
    assert [f["name"] for f in view["files"]] == ["acc.png"]
    assert view["total_size"] == 158
    assert crumbs("plots/a/") == [
        {"name": "plots", "prefix": "plots/"},
        {"name": "a", "prefix": "plots/a/"},
    ]


def test_only_raster_images_are_shown_inline_and_text_is_known_by_type_or_suffix() -> None:
    assert is_image({"path": "a.png", "content_type": "image/png"})
    assert is_image({"path": "a.jpg", "content_type": "application/octet-stream"})
    assert not is_image({"path": "a.svg", "content_type": "image/svg+xml"})
    assert not is_image({"path": "a.html", "content_type": "text/html"})
    assert is_text({"path": "train.log", "content_type": "application/octet-stream"})
    assert is_text({"path": "m.json", "content_type": "application/json; charset=utf-8"})
    assert not is_text({"path": "model.bin", "content_type": "application/octet-stream"})
    assert raw_url("x", "a b/c&d.txt", download=True) == (  # type: ignore[arg-type]
        "/experiments/x/artifacts/raw?path=a+b%2Fc%26d.txt&download=1"
    )


def test_best_runs_rank_by_each_metric_in_its_direction() -> None:
    runs: list[dict[str, Any]] = [
        {"id": 1, "best_metric": "val_loss", "best_mode": "min", "best_value": 0.3},
        {"id": 2, "best_metric": "val_loss", "best_mode": "min", "best_value": 0.1},
        {"id": 3, "best_metric": "val_accuracy", "best_mode": "max", "best_value": 0.8},
        {"id": 4, "best_metric": "val_accuracy", "best_mode": "max", "best_value": 0.9},
        {"id": 5, "best_metric": None, "best_value": None},
    ]
    ranked = best_runs(runs)
    assert [(g["metric"], [r["id"] for r in g["runs"]]) for g in ranked] == [
        ("val_accuracy", [4, 3]),
        ("val_loss", [2, 1]),
    ]


@pytest.mark.parametrize(
    "path",
    [
        "/projects",
        "/campaigns",
        "/campaigns/hpo/new",
        "/datasets",
        "/datasets/generate",
        "/datasets/import",
        "/experiments/00000000-0000-0000-0000-000000000001/artifacts",
    ],
)
async def test_a_signed_out_browser_is_sent_to_sign_in_and_back(client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?next=")


@pytest.mark.parametrize(
    "path",
    [
        "/projects",
        "/campaigns/hpo",
        "/campaigns/nas",
        "/datasets/generate",
        "/datasets/import",
        "/experiments/00000000-0000-0000-0000-000000000001/artifacts/delete",
    ],
)
async def test_a_post_without_the_sessions_token_is_refused_before_the_api_is_asked(
    client, settings, path: str
) -> None:
    """Nothing listens on the API URL: a refusal that asked the API would be a 502."""
    client.cookies.set(SESSION_COOKIE, sealed_session(settings))
    response = await client.post(path, data={"csrf_token": "forged", "name": "x", "path": "a"})
    assert response.status_code == 403
    assert "Form expired" in response.text


def test_attributions_are_read_from_the_shapes_explanations_hold_them_in() -> None:
    from runyard.console.pages.artifacts import attributions, bar_chart

    named = {"features": ["a", "b"], "attributions": [0.5, -1.0], "base_value": 0.1}
    assert attributions(named) == [("a", 0.5), ("b", -1.0)]
    assert attributions({"importances": {"x": 2, "y": 1}}) == [("x", 2.0), ("y", 1.0)]
    assert attributions({"shap_values": [1, 2]}) == [("feature 0", 1.0), ("feature 1", 2.0)]
    assert attributions({"rms": 0.3, "base_value": 1}) == [("rms", 0.3)]
    assert attributions({"heatmap": [[1, 2]], "steps": 50}) is None
    chart = bar_chart([("a", 0.5), ("b", -1.0)])
    # the largest magnitude first, drawn from the zero line in the middle
    assert [(b["name"], b["negative"]) for b in chart["bars"]] == [("b", True), ("a", False)]
    assert chart["bars"][0]["x"] == 0.0 and chart["bars"][0]["width"] == 50.0
    assert chart["bars"][1]["x"] == 50.0 and chart["bars"][1]["width"] == 25.0


def test_every_artifact_and_folder_links_to_the_models_register_form_filled_in() -> None:
    """The links carry the query parameters the models page fills its register form from: the
    experiment and the artifact's path (a folder's with its ``/``), URL-encoded."""
    import inspect
    from urllib.parse import parse_qs, urlsplit

    from runyard.console.pages.models import models
    from runyard.console.render import make_templates

    experiment = {"id": "00000000-0000-0000-0000-0000000000e1", "name": "run"}
    artifacts = [
        {"path": "model dir/weights&v1.pt", "size": 10, "content_type": "x"},
        {"path": "model.bin", "size": 2, "content_type": "application/octet-stream"},
    ]
    common = {"e": experiment, "path": "/x", "user": None, "csrf_token": "t"}
    html = (
        make_templates()
        .get_template("artifacts.html")
        .render(
            **common,
            prefix="",
            crumbs=[],
            view=folder_view(artifacts, ""),
            count=2,
            complete=True,
            deleted="",
        )
    )
    links = re.findall(
        r'<a href="([^"]+)" class="register-link">Register as model version'
        r'<span class="sr-only">: ([^<]+)</span></a>',
        html,
    )
    wanted = {"model dir/": "model dir/", "model.bin": "model.bin"}
    found = {}
    for href, label in links:
        url = urlsplit(href.replace("&amp;", "&"))
        assert url.path == "/models"
        query = parse_qs(url.query)
        assert query["experiment_id"] == [experiment["id"]]
        found[query["artifact_path"][0]] = label
    assert found == wanted
    assert "model+dir" not in html and "model%20dir/" in html  # encoded, slash kept
    # the models page reads exactly these parameters
    assert {"experiment_id", "artifact_path"} <= set(inspect.signature(models).parameters)

    artifact = {"path": "model dir/weights&v1.pt", "size": 10, "content_type": "x", "sha256": "0"}
    page = (
        make_templates()
        .get_template("artifact.html")
        .render(
            **common,
            a=artifact,
            crumbs=[],
            image=False,
            text=None,
            truncated=False,
            raw_url="/r",
            download_url="/d",
        )
    )
    (href,) = re.findall(r'<a class="button" href="([^"]+)" id="register-model">', page)
    query = parse_qs(urlsplit(href.replace("&amp;", "&")).query)
    assert query == {"experiment_id": [experiment["id"]], "artifact_path": [artifact["path"]]}
