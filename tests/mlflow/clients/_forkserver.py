"""Imports MLflow, scikit-learn and pandas once, then runs each client script in a child forked
from this process: importing MLflow takes seconds of CPU, which a fresh interpreter per script
would pay again and again. The child is still a process of its own (its environment, working
directory, stdout and stderr; the stock client with nothing patched), ended by SIGALRM when it
runs over its time.

Requests come on stdin, one JSON line each: ``{"script", "arguments", "env", "cwd", "stdout",
"stderr", "timeout"}``; the answer is one JSON line ``{"returncode": n}`` on stdout.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import tempfile
import traceback

import mlflow
import mlflow.data
import mlflow.sklearn  # noqa: F401
import pandas  # noqa: F401
import sklearn.datasets
import sklearn.linear_model  # noqa: F401

HERE = os.path.dirname(os.path.abspath(__file__))


def child(request: dict[str, object]) -> int:
    signal.alarm(int(request["timeout"]))  # type: ignore[call-overload]
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    tempfile.tempdir = None  # from the new TMPDIR
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    script = str(request["script"])
    sys.argv = [script, str(request["arguments"])]
    sys.path.insert(0, os.path.dirname(script))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def main() -> None:
    sys.path.insert(0, HERE)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _pid, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
