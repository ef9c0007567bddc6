"""``python -m runyard.devstack up|down|status|restart|provision|topics|wait-migrated``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from runyard.devstack import control
from runyard.devstack.paths import default_data_dir
from runyard.devstack.replicas import parse_replicas
from runyard.devstack.services import select
from runyard.devstack.topics import DEFAULT_PARTITIONS

if TYPE_CHECKING:
    from runyard.devstack.stack import Stack


class _Shutdown(BaseException):
    pass


def _services(value: str | None) -> list[str] | None:
    value = value or os.environ.get("RUNYARD_SERVICES") or ""
    names = [n.strip() for n in value.split(",") if n.strip()]
    return names or None


def _ports(values: list[str]) -> dict[str, int]:
    ports = {}
    for value in values:
        name, _, port = value.partition("=")
        if not port.isdigit():
            raise SystemExit(f"--port expects NAME=PORT, got {value!r}")
        ports[name] = int(port)
    return ports


def banner(stack: Stack) -> str:
    if stack.mail_dir is not None:
        mail = f"mail sink: {stack.mail_dir} (smtp {stack.smtp_host}:{stack.smtp_port})"
    else:
        mail = f"mail: {stack.smtp_url}"
    names = {s.name for s in stack.services}
    if "gateway" in names:
        head = f"gateway {stack.gateway_url}  docs {stack.gateway_url}/docs"
        if "console" in names:
            head += f"  console {stack.gateway_url}/"
    else:
        head = "  ".join(f"{n} {u}" for n, u in stack.service_urls.items())
    text = f"Runyard is up: {head}  {mail}"
    extra = {n: u for n, u in stack.instance_urls.items() if n not in stack.service_urls}
    if extra:
        text += "\n  replicas (the gateway forwards to the first of each service): " + "  ".join(
            f"{n} {u}" for n, u in extra.items()
        )
    return text


def cmd_up(args: argparse.Namespace) -> int:
    from runyard.devstack.stack import Stack, StackError

    options: dict[str, Any] = {}
    try:
        if args.replicas is not None:
            options["replica_counts"] = parse_replicas(args.replicas)
        if args.partitions is not None:
            options["topic_partitions"] = args.partitions
        stack = Stack.from_env(
            args.data_dir,
            services=_services(args.services),
            ports=_ports(args.port),
            kafka_port=args.kafka_port,
            smtp_port=args.smtp_port,
            echo=not args.quiet,
            notify=_notify,
            **options,
        )
    except ValueError as exc:
        print(f"runyard: {exc}", file=sys.stderr, flush=True)
        return 2
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            print("runyard: already stopping ...", file=sys.stderr, flush=True)
            return
        stopping = True
        raise _Shutdown(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    pid_file = stack.data_dir / control.PID_FILE
    code = 0
    try:
        stack.data_dir.mkdir(parents=True, exist_ok=True)
        stack._acquire_lock()
        pid_file.write_text(f"{os.getpid()}\n")
        stack.start()
        print(banner(stack), flush=True)
        print(
            f"  logs {stack.logs_dir}  kafka {stack.kafka_bootstrap}  "
            f"started in {stack.timings['total']:.1f}s; Ctrl-C to stop",
            flush=True,
        )
        while True:  # the supervisor restarts what dies and reports it through notify
            time.sleep(3600)
    except _Shutdown:
        print("runyard: stopping ...", flush=True)
    except StackError as exc:
        print(f"runyard: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stopping = True
        stack.stop()
        if control.read_pid(pid_file) == os.getpid():
            pid_file.unlink(missing_ok=True)
    if code == 0:
        print("runyard: stopped", flush=True)
    return code


def _notify(message: str) -> None:
    print(f"runyard: {message}", file=sys.stderr, flush=True)


def cmd_provision(args: argparse.Namespace) -> int:
    """Provision roles/schemas and migrate, against ``DATABASE_URL`` (docker-compose's
    one-shot ``migrate`` service). Each service's role comes from ``<PREFIX>DATABASE_URL`` when
    set, else a generated password kept in ``<data>/secrets.json``."""
    from runyard.devstack import provisioning

    admin = os.environ.get("DATABASE_URL")
    if not admin:
        print("runyard: provision needs DATABASE_URL (an admin URL)", file=sys.stderr)
        return 2
    admin = provisioning.sqlalchemy_url(admin)
    data_dir = Path(args.data_dir or default_data_dir()).resolve()
    logins = []
    for service in select(_services(args.services)):
        if not service.database:
            continue
        url = os.environ.get(f"{service.prefix}DATABASE_URL")
        if url:
            logins.append(provisioning.login_from_url(service, url))
        else:
            passwords = provisioning.load_passwords(data_dir / "secrets.json", [service.schema])
            logins += provisioning.logins_from_passwords(admin, [service], passwords, "runyard")
    deadline = time.monotonic() + args.wait
    while True:
        try:
            migrated = provisioning.provision(admin, logins)
            break
        except OSError as exc:  # database not accepting connections yet
            if time.monotonic() > deadline:
                raise
            print(f"runyard: waiting for the database ({exc})", flush=True)
            time.sleep(1.0)
    roles = ", ".join(login.role for login in logins)
    print(f"runyard: provisioned {roles}; migrated {', '.join(migrated) or 'nothing'}")
    return 0


def cmd_wait_migrated(args: argparse.Namespace) -> int:
    """Wait until each service's schema is at its Alembic head, reached with the service's own
    ``<PREFIX>DATABASE_URL`` (a Kubernetes initContainer runs this before the service starts)."""
    import asyncio

    from runyard.devstack import provisioning

    pending = {}
    for service in select(_services(args.services)):
        if not service.database:
            continue
        url = os.environ.get(f"{service.prefix}DATABASE_URL")
        if not url:
            print(f"runyard: {service.prefix}DATABASE_URL is not set", file=sys.stderr)
            return 2
        pending[service.name] = (service, url)
    deadline = time.monotonic() + args.timeout
    while pending:
        for name, (service, url) in list(pending.items()):
            if asyncio.run(provisioning.migrated_to_head(service, url)):
                print(f"runyard: {name} schema is at its migrations' head", flush=True)
                del pending[name]
        if not pending:
            break
        if time.monotonic() > deadline:
            print(
                f"runyard: not migrated after {args.timeout:g}s: {', '.join(pending)}",
                file=sys.stderr,
            )
            return 1
        time.sleep(args.interval)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the catalog's topics and their DLQs on ``KAFKA_BOOTSTRAP_SERVERS`` (for a Kafka
    cluster that does not auto-create topics, or to choose their partition count)."""
    import asyncio

    from aiokafka.errors import KafkaConnectionError

    from runyard.devstack import topics

    bootstrap = args.bootstrap or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("runyard: topics needs KAFKA_BOOTSTRAP_SERVERS or --bootstrap", file=sys.stderr)
        return 2
    configs = {}
    if args.min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(args.min_insync_replicas)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            created, counts = asyncio.run(
                topics.ensure_topics(
                    bootstrap,
                    topics.catalog_topics(dead_letter=not args.no_dlq),
                    partitions=args.partitions,
                    replication_factor=args.replication_factor,
                    configs=configs,
                )
            )
            break
        except (OSError, KafkaConnectionError) as exc:  # broker not reachable yet
            if time.monotonic() > deadline:
                raise
            print(f"runyard: waiting for the broker ({exc!r})", flush=True)
            time.sleep(1.0)
    for topic, count in sorted(counts.items()):
        print(f"  {topic:<40} partitions={count}{'  (created)' if topic in created else ''}")
    print(f"runyard: {len(created)} topics created, {len(counts) - len(created)} existed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runyard.devstack")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--data-dir", type=Path, default=None, help="default: <repo>/.data")
        return p

    up = add("up", "start the local stack in the foreground (Ctrl-C stops it)")
    up.add_argument(
        "--services", help="comma-separated subset (default: all; env RUNYARD_SERVICES)"
    )
    up.add_argument("--port", action="append", default=[], metavar="NAME=PORT")
    up.add_argument("--kafka-port", type=int, default=9092)
    up.add_argument("--smtp-port", type=int, default=2525)
    up.add_argument("--quiet", action="store_true", help="do not echo service logs")
    up.add_argument(
        "--replicas",
        metavar="NAME=N[,NAME=N]",
        help="processes per service, e.g. webhooks=2,notifications=2 (env RUNYARD_REPLICAS); "
        "replica i of a service listens on its port + 10*(i-1)",
    )
    up.add_argument(
        "--partitions",
        type=int,
        help=f"partitions of the topics the stack creates (default "
        f"{DEFAULT_PARTITIONS}; env RUNYARD_TOPIC_PARTITIONS)",
    )
    down = add("down", "stop the stack started by `up`")
    down.add_argument("--timeout", type=float, default=60.0)
    add("status", "show every process: state, pid, uptime, restarts, readiness, address")
    restart = add("restart", "restart one process of the running stack, wait until it is ready")
    restart.add_argument("name", help="a service (webhooks, webhooks-2 ...), postgres, kafka, mail")
    restart.add_argument("--timeout", type=float, default=120.0, help="seconds; then exit 1")
    provision = add("provision", "create roles/schemas and migrate (against DATABASE_URL)")
    provision.add_argument("--services", help="comma-separated subset (default: all)")
    provision.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the DB")
    topics_ = add("topics", "create the event topics and DLQs (against KAFKA_BOOTSTRAP_SERVERS)")
    topics_.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS")
    topics_.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    topics_.add_argument("--replication-factor", type=int, default=1)
    topics_.add_argument("--min-insync-replicas", type=int, default=None)
    topics_.add_argument("--no-dlq", action="store_true", help="only the event topics")
    topics_.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the broker")
    wait = add("wait-migrated", "wait until each service's schema is at its migrations' head")
    wait.add_argument("--services", help="comma-separated subset (default: all)")
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds; then exit 1")
    wait.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
    args = parser.parse_args(argv)
    handler = {
        "up": cmd_up,
        "down": control.cmd_down,
        "status": control.cmd_status,
        "restart": control.cmd_restart,
        "provision": cmd_provision,
        "topics": cmd_topics,
        "wait-migrated": cmd_wait_migrated,
    }
    return handler[args.command](args)
