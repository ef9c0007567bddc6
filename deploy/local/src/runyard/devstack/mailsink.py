"""Development SMTP sink: accepts every mail and stores it as ``<dir>/<timestamp>-<id>.eml``.

Run: ``python -m runyard.devstack.mailsink --port 2525 --dir .data/mail``. One log line per mail.
The stored file is the message as received, preceded by ``X-Envelope-From`` / ``X-Envelope-To``
headers (the SMTP envelope, so Bcc recipients are visible too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import uuid
from datetime import UTC, datetime
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class MailSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def store(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
        envelope = (
            f"X-Envelope-From: <{mail_from}>\r\nX-Envelope-To: {', '.join(rcpt_tos)}\r\n"
        ).encode()
        tmp = self.directory / f".{path.name}.tmp"  # readers never see half a mail
        tmp.write_bytes(envelope + content)
        os.replace(tmp, path)
        return path

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        content = raw if isinstance(raw, bytes) else raw.encode()
        mail_from = envelope.mail_from or ""
        path = self.store(mail_from, list(envelope.rcpt_tos), content)
        headers = BytesParser(policy=default_policy).parsebytes(content, headersonly=True)
        print(
            f"mail from={mail_from} to={','.join(envelope.rcpt_tos)} "
            f"subject={str(headers.get('subject', ''))!r} file={path}",
            flush=True,
        )
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, directory: Path) -> None:
    sink = MailSink(directory)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(sink, hostname="runyard-mailsink", data_size_limit=50 * 1024 * 1024)

    server = await loop.create_server(factory, host, port)
    print(f"mail sink listening on smtp://{host}:{port}, storing mail in {directory}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runyard.devstack.mailsink")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--dir", type=Path, required=True, help="where to store .eml files")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.dir.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
