"""``runyard models``: the registered models, their versions and aliases."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from runyard.sdk.api import retrying
from runyard.sdk.cli import render
from runyard.sdk.cli.commands import Failed, api_of, dump, out
from runyard.sdk.config import Settings
from runyard.sdk.models import find_model


def _when(value: Any) -> str:
    return str(value or "")[:19].replace("T", " ")


def models_ls(args: argparse.Namespace, settings: Settings) -> int:
    params = {"name_contains": args.name, "alias": args.alias, "tag": args.tag}
    with api_of(settings) as api:
        items: list[dict[str, Any]] = []
        for item in retrying(
            lambda: list(api.pages("/models", limit=min(args.limit, 500), **params))
        ):
            if len(items) >= args.limit:
                break
            items.append(item)
    if args.json:
        dump(items)
        return 0
    if not items:
        out("no registered models")
        return 0
    rows = [
        [
            m["name"],
            m.get("last_version", 0),
            ", ".join(f"{a}=v{v}" for a, v in sorted((m.get("aliases") or {}).items())) or "-",
            render.clip(m.get("description") or "-", 40),
            _when(m.get("updated_at")),
        ]
        for m in items
    ]
    out(render.table(["NAME", "VERSIONS", "ALIASES", "DESCRIPTION", "UPDATED"], rows))
    return 0


def models_show(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        model = find_model(api, args.name)
        if model is None:
            raise Failed(f"no registered model {args.name!r}")
        versions = list(
            retrying(
                lambda: list(
                    api.pages(f"/models/{model['id']}/versions", archived=args.archived or None)
                )
            )
        )
    if args.json:
        dump({**model, "versions": versions})
        return 0
    out(f"{model['name']}  ({model['id']})")
    if model.get("description"):
        out(f"  {model['description']}")
    aliases = model.get("aliases") or {}
    out("aliases: " + (", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"))
    if not versions:
        out("no versions")
        return 0
    rows = [
        [
            f"v{v['version']}",
            v["status"] + (" (archived)" if v.get("archived_at") else ""),
            ", ".join(v.get("aliases") or []) or "-",
            v.get("size"),
            (v.get("sha256") or "-")[:12],
            v.get("experiment_id") or "-",
            v.get("artifact_path"),
            (
                f"{v['metric_name']}={render.number(v.get('metric_value'))}"
                if v.get("metric_name")
                else "-"
            ),
            _when(v.get("created_at")),
        ]
        for v in versions
    ]
    headers = ["VERSION", "STATUS", "ALIASES", "SIZE", "SHA256", "EXPERIMENT", "ARTIFACT"]
    out(render.table([*headers, "METRIC", "CREATED"], rows, max_width=48))
    return 0


def models_alias(args: argparse.Namespace, settings: Settings) -> int:
    if args.delete == (args.version is not None):
        raise Failed("give a VERSION to set the alias, or --delete to remove it (not both)")
    with api_of(settings) as api:
        model = find_model(api, args.name)
        if model is None:
            raise Failed(f"no registered model {args.name!r}")
        path = f"/models/{model['id']}/aliases/{quote(args.alias, safe='')}"
        if args.delete:
            retrying(lambda: api.request("DELETE", path))
            out(f"{args.alias} of {model['name']} removed")
            return 0
        answer = retrying(lambda: api.request("PUT", path, json={"version": args.version}))
    previous = answer.get("previous_version")
    if previous is None:
        out(f"{answer['alias']} of {model['name']} is now v{answer['version']}")
    elif previous == answer["version"]:
        out(f"{answer['alias']} of {model['name']} already was v{answer['version']}")
    else:
        out(f"{answer['alias']} of {model['name']} moved from v{previous} to v{answer['version']}")
    return 0


def add_parser(sub: Any) -> None:
    """``runyard models ls|show|alias``."""
    models = sub.add_parser(
        "models", help="registered models, versions, aliases", description="the model registry"
    )
    models_sub = models.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    models_sub.required = True
    p = models_sub.add_parser("ls", help="your registered models: a table, or --json")
    p.set_defaults(run=models_ls)
    p.add_argument("name", nargs="?", help="only names containing this (any case)")
    p.add_argument("--alias", help="only models that have this alias")
    p.add_argument("--tag", action="append", help="KEY or KEY=VALUE; repeatable")
    p.add_argument("-n", "--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true")

    p = models_sub.add_parser("show", help="a model: its aliases and versions with lineage")
    p.set_defaults(run=models_show)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--archived", action="store_true", help="list archived versions too")
    p.add_argument("--json", action="store_true")

    p = models_sub.add_parser(
        "alias", help="point ALIAS at VERSION (create or move it), or --delete it"
    )
    p.set_defaults(run=models_alias)
    p.add_argument("name", metavar="NAME")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("version", metavar="VERSION", type=int, nargs="?")
    p.add_argument("--delete", action="store_true", help="remove the alias")
