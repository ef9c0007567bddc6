"""What each ``runyard`` command does (``main`` parses the command line and reports errors)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from runyard.sdk.api import Api, ApiError, NotFound, RunyardError, retrying
from runyard.sdk.cli import render
from runyard.sdk.config import Settings, config_file, write_login
from runyard.sdk.sync import sync
from runyard.sdk.upload import TERMINAL, is_uuid, quote_filter


class Failed(RunyardError):
    """A command that did not do what it was asked (exit code 1)."""


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def dump(value: Any) -> None:
    out(json.dumps(value, indent=2, sort_keys=True))


def api_of(settings: Settings) -> Api:
    if not settings.api_key:
        raise Failed(
            "no API key: run `runyard login` or set RUNYARD_API_KEY "
            "(create one with POST /api/v1/auth/api-keys)"
        )
    return Api(settings.url, settings.api_key, settings.timeout)


def experiment(api: Api, ref: str) -> dict[str, Any]:
    """An experiment by id, else by its exact name."""
    if is_uuid(ref):
        try:
            found: dict[str, Any] = retrying(lambda: api.get(f"/experiments/{ref}"))
            return found
        except NotFound:
            raise Failed(f"no experiment {ref}") from None
    page = retrying(lambda: api.get("/experiments", filter=f"name = {quote_filter(ref)}", limit=2))
    if not page["items"]:
        raise Failed(f"no experiment with the id or name {ref!r}")
    return dict(page["items"][0])


def all_runs(api: Api, experiment_id: str) -> list[dict[str, Any]]:
    return list(retrying(lambda: list(api.pages(f"/experiments/{experiment_id}/runs"))))


# ------------------------------------------------------------------------------- commands
def login(args: argparse.Namespace, settings: Settings) -> int:
    url = (args.url or settings.url).rstrip("/")
    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
    else:
        key = getpass.getpass(f"API key for {url} (ry_...): ").strip()
    if not key:
        raise Failed("no API key given")
    with Api(url, key, settings.timeout) as api:
        me = retrying(lambda: api.get("/auth/me"))
    path = write_login(url, key)
    out(f"Logged in to {url} as {me['username']}; key stored in {path} (mode 0600)")
    return 0


def whoami(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        me = retrying(lambda: api.get("/auth/me"))
    if args.json:
        dump(me)
    else:
        out(f"{me['username']} <{me['email']}> ({me['role']}) at {settings.url}")
    return 0


def experiments_ls(args: argparse.Namespace, settings: Settings) -> int:
    params = {
        "filter": args.filter,
        "q": args.query,
        "order_by": args.order_by,
        "status": args.status,
        "tag": args.tag,
        "model_type": args.model_type,
    }
    with api_of(settings) as api:
        items = list(retrying(lambda: list(_take(api, params, args.limit))))
    if args.json:
        dump(items)
        return 0
    if not items:
        out("no experiments")
        return 0
    rows = [
        [
            e["id"],
            e["name"],
            e["status"],
            e.get("model_type") or "-",
            e.get("total_epochs", 0),
            f"{e['best_metric']}={render.number(e.get('best_value'))}",
            str(e.get("created_at", ""))[:19].replace("T", " "),
        ]
        for e in items
    ]
    out(render.table(["ID", "NAME", "STATUS", "MODEL", "EPOCHS", "BEST", "CREATED"], rows))
    return 0


def _take(api: Api, params: dict[str, Any], limit: int) -> Iterator[dict[str, Any]]:
    for count, item in enumerate(api.pages("/experiments", limit=min(limit, 500), **params)):
        if count >= limit:
            return
        yield item


def show(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        found = experiment(api, args.id)
    if args.json:
        dump(found)
        return 0
    fields = [
        ("id", found["id"]),
        ("name", found["name"]),
        ("status", found["status"]),
        ("model type", found.get("model_type")),
        ("dataset", found.get("dataset_id")),
        ("tags", ", ".join(found.get("tags") or []) or "-"),
        ("epochs", found.get("total_epochs")),
        (
            "best",
            f"{found['best_metric']} ({found['best_mode']}) = "
            f"{render.number(found.get('best_value'))} "
            f"at epoch {render.number(found.get('best_epoch'))}",
        ),
        ("created", found.get("created_at")),
        ("started", found.get("started_at")),
        ("ended", found.get("ended_at")),
        ("error", found.get("error_message")),
    ]
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        if value is not None:
            out(f"{key.ljust(width)}  {render.number(value)}")
    for title, mapping in (("hyperparameters", "hyperparameters"), ("metrics", "metrics")):
        values = found.get(mapping) or {}
        if values:
            out(f"{title}:")
            for key in sorted(values):
                out(f"  {key} = {render.number(values[key])}")
    if found.get("notes"):
        out("notes:")
        for line in str(found["notes"]).splitlines():
            out(f"  {line}")
    return 0


def runs(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        found = experiment(api, args.id)
        items = all_runs(api, found["id"])
    if args.csv:
        sys.stdout.write(render.runs_csv(items))
        return 0
    names = render.metric_names(items)
    rows = [[r["epoch"], *(render.run_values(r).get(n) for n in names)] for r in items]
    out(render.table(["EPOCH", *names], rows) if items else "no epochs logged")
    return 0


def export(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        found = experiment(api, args.id)
        items = all_runs(api, found["id"])
    if args.format == "csv":
        text = render.runs_csv(items)
    else:
        text = "".join(
            json.dumps({"epoch": r["epoch"], **render.run_values(r)}, sort_keys=True) + "\n"
            for r in items
        )
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8", newline="") as target:
            target.write(text)
        print(f"{len(items)} epochs written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def compare(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        found = [experiment(api, ref) for ref in args.ids]
    if args.json:
        dump(found)
        return 0
    params = sorted({k for e in found for k in e.get("hyperparameters") or {}})
    metrics = sorted({k for e in found for k in e.get("metrics") or {}})
    rows: list[list[Any]] = [
        ["status", *(e["status"] for e in found)],
        ["model_type", *(e.get("model_type") for e in found)],
        ["epochs", *(e.get("total_epochs") for e in found)],
        ["best", *(f"{e['best_metric']}={render.number(e.get('best_value'))}" for e in found)],
        ["best_epoch", *(e.get("best_epoch") for e in found)],
    ]
    rows += [
        [f"params.{k}", *((e.get("hyperparameters") or {}).get(k) for e in found)] for k in params
    ]
    rows += [[f"metrics.{k}", *((e.get("metrics") or {}).get(k) for e in found)] for k in metrics]
    for row in rows:  # a * marks the rows that differ
        shown = {render.number(v) for v in row[1:]}
        row[0] = ("* " if len(shown) > 1 else "  ") + str(row[0])
    headers = ["", *(render.clip(e["name"], 24) for e in found)]
    out(render.table(headers, rows, max_width=24))
    return 0


def tail(args: argparse.Namespace, settings: Settings) -> int:
    """The last epochs; with -f, every new one as it arrives, until the experiment ends."""
    with api_of(settings) as api:
        found = experiment(api, args.id)
        experiment_id, metric = found["id"], args.metric or found["best_metric"]
        follower = Follower(api, experiment_id)
        items = retrying(follower.new)
        history = [render.run_values(r).get(metric) for r in items]
        names = render.metric_names(items[-50:])
        out(f"{found['name']} ({found['status']}): sparkline of {metric}")
        first = 0 if args.follow else max(0, len(items) - args.lines)
        for i in range(first, len(items)):
            out(_line(items[i], names, history[: i + 1]))
        status = found["status"]
        while args.follow:
            if status in TERMINAL:
                out(f"experiment {status}")
                break
            time.sleep(args.interval)
            status = retrying(lambda: api.get(f"/experiments/{experiment_id}"))["status"]
            for run in retrying(follower.new):  # after the status: no epoch is missed at the end
                names = names or render.metric_names([run])
                history.append(render.run_values(run).get(metric))
                out(_line(run, names, history))
    return 0


class Follower:
    """New epochs of an experiment, page by page: each poll starts at the last full page's
    cursor (cursors are opaque), so it costs one page, not the whole list."""

    def __init__(self, api: Api, experiment_id: str) -> None:
        self.api, self.path = api, f"/experiments/{experiment_id}/runs"
        self.cursor: str | None = None
        self.last = -1

    def new(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        cursor = self.cursor
        while True:
            page = self.api.get(self.path, limit=500, cursor=cursor)
            found += [r for r in page["items"] if r["epoch"] > self.last]
            if not page.get("next_cursor"):
                break
            cursor = self.cursor = page["next_cursor"]
        if found:
            self.last = found[-1]["epoch"]
        return found


def _line(run: dict[str, Any], names: list[str], history: list[float | None]) -> str:
    values = [v for v in history if v is not None]
    return render.epoch_line(run, names, render.sparkline(values, 30) if values else None)


def sync_cmd(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.api_key:
        raise Failed("no API key: run `runyard login` or set RUNYARD_API_KEY")
    outcomes = sync(
        settings,
        args.ids,
        finish_killed=not args.leave_open,
        force=args.force,
        report=lambda line: (
            out(line) if not line.startswith("error: ") else print(line, file=sys.stderr)
        ),
    )
    if not outcomes:
        out("nothing to sync" + (f" matching {' '.join(args.ids)}" if args.ids else ""))
        return 1 if args.ids else 0
    return 0 if all(o.ok for o in outcomes) else 1


def config_path(args: argparse.Namespace, settings: Settings) -> int:
    out(str(config_file()))
    return 0


def describe_api_error(exc: ApiError) -> str:
    return exc.one_line()
