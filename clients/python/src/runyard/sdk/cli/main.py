"""``runyard``: the command line.

Exit codes: 0 done; 1 the command failed (the server refused, not found, nothing to sync); 2 bad
usage; 3 the server cannot be reached; 130 interrupted. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Callable

from runyard.sdk.api import ApiError, AuthError, RunyardError, Transient
from runyard.sdk.cli import alerts, commands, models
from runyard.sdk.config import ConfigError, Settings
from runyard.sdk.version import __version__

Command = Callable[[argparse.Namespace, Settings], int]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="runyard",
        description="Runyard from the shell: experiments, their epochs, and uploading runs kept "
        "locally. Reads RUNYARD_URL and RUNYARD_API_KEY, else what `runyard login` stored.",
    )
    top.add_argument("--version", action="version", version=f"runyard {__version__}")
    top.add_argument("--url", help="the gateway (default: RUNYARD_URL, the login, or :8000)")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def command(name: str, run: Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    p = command("login", commands.login, "store the URL and an API key (file mode 0600)")
    p.add_argument("--api-key-stdin", action="store_true", help="read the key from stdin")

    p = command("whoami", commands.whoami, "who the API key belongs to")
    p.add_argument("--json", action="store_true")

    exp = sub.add_parser("experiments", help="list experiments", description="experiments")
    exp_sub = exp.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    exp_sub.required = True
    p = exp_sub.add_parser("ls", help="search experiments: a table, or --json")
    p.set_defaults(run=commands.experiments_ls)
    p.add_argument(
        "filter", nargs="?", help="e.g. \"metrics.val_accuracy > 0.9 and model_type = 'cnn1d'\""
    )
    p.add_argument("-q", "--query", help="full text over name, notes, model type, tags")
    p.add_argument("--order-by", help="-created_at (default), name, 'metrics.val_loss asc' ...")
    p.add_argument(
        "--status", choices=["pending", "running", "paused", "completed", "failed", "cancelled"]
    )
    p.add_argument("--tag")
    p.add_argument("--model-type")
    p.add_argument("-n", "--limit", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true")

    p = command("show", commands.show, "one experiment (by id or exact name)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")

    p = command("runs", commands.runs, "an experiment's epochs: a table, or --csv")
    p.add_argument("id")
    p.add_argument("--csv", action="store_true")

    p = command("tail", commands.tail, "the last epochs; -f follows new ones with a sparkline")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-m", "--metric", help="the sparkline's metric (default: the best metric)")
    p.add_argument("-n", "--lines", type=int, default=10)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls")

    p = command("compare", commands.compare, "hyperparameters and metrics side by side")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.add_argument("--json", action="store_true")

    p = command("sync", commands.sync_cmd, "upload runs kept locally (offline, killed, unsent)")
    p.add_argument("ids", nargs="*", metavar="ID", help="only these runs (default: all)")
    p.add_argument(
        "--leave-open",
        action="store_true",
        help="do not mark runs whose process died as failed",
    )
    p.add_argument("--force", action="store_true", help="also runs written on another host")

    p = command("export", commands.export, "an experiment's epochs as CSV or JSON lines")
    p.add_argument("id")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("-o", "--output", help="a file (default: stdout)")

    models.add_parser(sub)
    alerts.add_parser(sub)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if getattr(args, "limit", 1) < 1:
            raise commands.Failed("--limit must be at least 1")
        settings = Settings.load(url=args.url)
        code: int = args.run(args, settings)
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Transient as exc:
        return _error(str(exc), 3)
    except AuthError as exc:
        return _error(exc.one_line(), 1)
    except ApiError as exc:
        return _error(exc.one_line(), 1)
    except BrokenPipeError:  # `runyard runs ID | head`
        return 0
    except (RunyardError, ConfigError, OSError) as exc:
        return _error(str(exc), 1)


def _error(message: str, code: int) -> int:
    print(f"runyard: error: {message}", file=sys.stderr)
    return code


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
