"""Make a copy of MLflow's REST tracking tests that runs against Runyard (``README.md``).

    python bench/mlflow_rest_suite/prepare.py [--stock] <MLflow checkout> <work dir>

Copies ``tests/tracking/test_rest_tracking.py`` and the test helpers it imports from an MLflow
source checkout (the tag of the client's version, v3.17.2) into ``<work dir>/tests``, and
replaces the module's server fixtures (``store_type``, ``mlflow_client``: an MLflow server per
test) by an import of ``runyard_standin``'s. Nothing else of the module is changed. ``--stock`` leaves the fixtures:
the same tests against an MLflow server they start.
"""

from __future__ import annotations

import ast
import shutil
import sys
from pathlib import Path

MODULE = Path("tests/tracking/test_rest_tracking.py")
#: what the module imports from MLflow's own tests (copied whole)
HELPERS = (
    Path("tests/__init__.py"),
    Path("tests/conftest.py"),
    Path("tests/helper_functions.py"),
    Path("tests/tracking/__init__.py"),
    Path("tests/tracking/integration_test_utils.py"),
    Path("tests/integration/__init__.py"),
    Path("tests/integration/utils.py"),
    # imported by newer copies of tests/conftest.py
    Path("tests/autologging/__init__.py"),
    Path("tests/autologging/fixtures.py"),
    Path("tests/tracing/__init__.py"),
    Path("tests/tracing/helper.py"),
)
REPLACED = ("store_type", "mlflow_client")
IMPORT = "from runyard_standin import mlflow_client, store_type  # Runyard's stand-in\n"


def with_standin(source: str) -> str:
    """``source`` with the module-level fixtures ``REPLACED`` swapped for one import."""
    lines = source.splitlines(keepends=True)
    spans = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name in REPLACED:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans.append((first - 1, node.end_lineno or node.lineno))
    if len(spans) != len(REPLACED):
        raise SystemExit(f"{MODULE} has no module-level fixtures {REPLACED}: check the version")
    for start, end in sorted(spans, reverse=True):
        lines[start:end] = []
    first_start = min(start for start, _ in spans)
    lines.insert(first_start, IMPORT)
    return "".join(lines)


def main() -> None:
    args = sys.argv[1:]
    stock = "--stock" in args
    paths = [a for a in args if a != "--stock"]
    if len(paths) != 2:
        raise SystemExit(__doc__)
    checkout, work = Path(paths[0]), Path(paths[1])
    for relative in HELPERS:
        if (checkout / relative).exists():
            (work / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(checkout / relative, work / relative)
    (work / MODULE).parent.mkdir(parents=True, exist_ok=True)
    source = (checkout / MODULE).read_text()
    (work / MODULE).write_text(source if stock else with_standin(source))
    print(f"{work / MODULE}: " + ("as MLflow wrote it" if stock else "Runyard's stand-in"))


if __name__ == "__main__":
    main()
