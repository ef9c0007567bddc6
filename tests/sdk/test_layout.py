"""``runyard`` is both the SDK's package and the namespace of the platform's packages: in the
workspace both import, and importing a platform package does not load the SDK."""

from __future__ import annotations

import subprocess
import sys


def test_sdk_next_to_the_platform_packages() -> None:
    code = (
        "import sys, runyard.shared, runyard.devstack\n"
        "assert 'runyard.sdk' not in sys.modules, 'the SDK was loaded by a platform import'\n"
        "import runyard\n"
        "print(runyard.init.__module__, runyard.shared.__name__)\n"
        "assert 'runyard.sdk' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["runyard.sdk.run", "runyard.shared"]
