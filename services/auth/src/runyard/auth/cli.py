"""``python -m runyard.auth create-admin``: the first admin (or any later one).

    make admin                                  # asks for username, email, password
    python -m runyard.auth create-admin --username root --email root@example.org --password-stdin

The database is ``--database-url``, else ``AUTH_DATABASE_URL``, else the local stack's (``make
up``: ``.data/`` of the repository, or ``RUNYARD_DATA_DIR``). The user is written with its
``user.registered`` event in one transaction, like a registration through the API.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ValidationError

from runyard.auth import accounts, security
from runyard.auth.clock import SystemClock
from runyard.auth.config import Settings
from runyard.auth.context import AuthContext
from runyard.auth.models import SCHEMA
from runyard.auth.schemas import Email, NewPassword, Username
from runyard.shared.db import create_engine, create_sessionmaker
from runyard.shared.http import ProblemError
from runyard.shared.logging import configure_logging


class AdminInput(BaseModel):
    username: Username
    email: Email
    password: NewPassword


def local_stack_database_url(data_dir: Path, database: str = "runyard") -> str | None:
    """The auth role's URL for the embedded PostgreSQL of a local stack in ``data_dir``."""
    pid_file, secrets_file = data_dir / "postgres" / "postmaster.pid", data_dir / "secrets.json"
    if not (pid_file.exists() and secrets_file.exists()):
        return None
    lines = pid_file.read_text().splitlines()
    password = json.loads(secrets_file.read_text()).get("db_passwords", {}).get(SCHEMA)
    if len(lines) < 5 or not password:
        return None
    port, socket_dir = lines[3].strip(), lines[4].strip()
    host = f"host={quote(socket_dir, safe='/')}" if socket_dir else "host=127.0.0.1"
    return (
        f"postgresql+asyncpg://runyard_{SCHEMA}:{quote(password, safe='')}@/{database}"
        f"?{host}&port={port}"
    )


def default_data_dir() -> Path:
    configured = os.environ.get("RUNYARD_DATA_DIR")
    if configured:
        return Path(configured)
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "uv.lock").exists():
            return candidate / ".data"
    return here / ".data"


def database_url(explicit: str | None) -> str:
    url = (
        explicit
        or os.environ.get("AUTH_DATABASE_URL")
        or local_stack_database_url(default_data_dir())
    )
    if not url:
        raise SystemExit(
            "runyard.auth: no database: pass --database-url, set AUTH_DATABASE_URL, "
            "or start the local stack (make up)"
        )
    return url


def ask(args: argparse.Namespace) -> AdminInput:
    username = args.username or input("Username: ").strip()
    email = args.email or input("Email: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password (12-128 characters): ")
        if getpass.getpass("Password again: ") != password:
            raise SystemExit("runyard.auth: the passwords differ")
    try:
        return AdminInput(username=username, email=email, password=password)
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise SystemExit(f"runyard.auth: {problems}") from exc


async def create_admin(url: str, data: AdminInput) -> str:
    # The command only writes a user row: it runs in whatever environment the operator names.
    environment = os.environ.get("AUTH_ENVIRONMENT") or os.environ.get("ENVIRONMENT") or "dev"
    settings = Settings(database_url=url, run_workers=False, environment=environment)
    # Creating a user signs nothing: a throwaway key fills the context.
    signing_key = security.SigningKey.from_private_key(Ed25519PrivateKey.generate())
    ctx = AuthContext.build(settings, clock=SystemClock(), signing_key=signing_key)
    engine = create_engine(url, pool_size=1, application_name="runyard-auth-cli")
    try:
        sessionmaker = create_sessionmaker(engine, schema=SCHEMA)
        async with sessionmaker() as session, session.begin():
            user = await accounts.create_user(
                session,
                ctx,
                username=data.username,
                email=data.email,
                password=data.password,
                role="admin",
                reveal_taken_email=True,
            )
            return str(user.id)
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runyard.auth")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-admin", help="create a user with role admin")
    create.add_argument("--username")
    create.add_argument("--email")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.add_argument("--database-url", help="default: AUTH_DATABASE_URL, else the local stack")
    args = parser.parse_args(argv)

    configure_logging(service="auth", level="WARNING", json=False)
    data = ask(args)
    url = database_url(args.database_url)
    try:
        user_id = asyncio.run(create_admin(url, data))
    except ProblemError as exc:
        detail = exc.detail or exc.title
        if exc.errors:
            detail += " " + "; ".join(str(e["msg"]) for e in exc.errors)
        print(f"runyard.auth: {detail}", file=sys.stderr)
        return 1
    print(f"created admin {data.username} ({user_id})")
    return 0
