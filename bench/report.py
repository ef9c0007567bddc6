"""Write a benchmark's figures into its own block of docs/performance.md.

A block is delimited by ``<!-- bench:<name>:<label> -->`` and ``<!-- /bench:<name>:<label> -->``;
writing replaces the block (or appends it at the end of the file the first time), so the page
always shows the latest run of each bench and label, with the command and the machine.
"""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

PERFORMANCE_MD = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load} at the end, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def write_block(name: str, label: str, body: str, path: Path = PERFORMANCE_MD) -> None:
    begin, end = f"<!-- bench:{name}:{label} -->", f"<!-- /bench:{name}:{label} -->"
    text = path.read_text()
    block = f"{begin}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)
    print(f"wrote the {name}:{label} block of {path}")
