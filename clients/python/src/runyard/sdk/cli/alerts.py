"""``runyard alerts``: the alerts your rules fired and cleared, newest first."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from runyard.sdk.alerts import list_alerts
from runyard.sdk.cli import render
from runyard.sdk.cli.commands import api_of, dump, experiment, out
from runyard.sdk.config import Settings


def alerts_ls(args: argparse.Namespace, settings: Settings) -> int:
    with api_of(settings) as api:
        experiment_id = experiment(api, args.experiment)["id"] if args.experiment else None
        found = list_alerts(
            api,
            experiment_id=experiment_id,
            rule_id=args.rule,
            status=args.status,
            limit=args.limit,
        )
    if args.json:
        dump([{**asdict(a), "created_at": a.created_at.isoformat()} for a in found])
        return 0
    if not found:
        out("no alerts")
        return 0
    rows: list[list[Any]] = [
        [
            a.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            a.status,
            a.severity,
            a.rule_name,
            a.experiment_name,
            "-" if a.epoch is None else a.epoch,
            a.summary,
        ]
        for a in found
    ]
    headers = ["TIME (UTC)", "STATUS", "SEVERITY", "RULE", "EXPERIMENT", "EPOCH", "SUMMARY"]
    out(render.table(headers, rows, max_width=60))
    return 0


def add_parser(sub: Any) -> None:
    """``runyard alerts [--experiment ID] [--rule ID] [--status ...]``."""
    p = sub.add_parser(
        "alerts",
        help="the alerts your rules fired and cleared, newest first",
        description="the alerts your alert rules fired and cleared, newest first",
    )
    p.set_defaults(run=alerts_ls)
    p.add_argument("--experiment", metavar="ID", help="only this experiment's (id or exact name)")
    p.add_argument("--rule", metavar="RULE_ID", help="only this rule's")
    p.add_argument("--status", choices=["triggered", "resolved"])
    p.add_argument("-n", "--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true")
