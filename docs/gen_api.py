"""Generate the public API and event contract documents in docs/api/ from the code.

    uv run python docs/gen_api.py          # rewrite docs/api/openapi.json and asyncapi.json
    uv run python docs/gen_api.py --check  # exit 1 if either is stale (tests/test_docs.py)

``openapi.json`` is the merged document the gateway serves at ``/openapi.json`` (every
service's own document, merged exactly as the gateway merges them, plus the gateway's admin
paths). ``asyncapi.json`` holds each service's ``/asyncapi.json``: what it publishes and
consumes. Keys are sorted, so a diff shows only what changed in the surface users depend on.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from fastapi.openapi.utils import get_openapi

API_DIR = Path(__file__).with_name("api")
SERVICES = ("auth", "experiments", "notifications", "webhooks")


def _app(service: str) -> Any:
    main = importlib.import_module(f"runyard.{service}.main")
    config = importlib.import_module(f"runyard.{service}.config")
    return main.create_app(config.Settings(environment="test"))


def _asyncapi(app: Any) -> dict[str, Any]:
    route = next(r for r in app.routes if getattr(r, "path", None) == "/asyncapi.json")
    document: dict[str, Any] = asyncio.run(route.endpoint())
    return document


def documents() -> dict[str, dict[str, Any]]:
    from runyard.gateway import admin
    from runyard.gateway.openapi import GATEWAY, merge_documents

    apps = {service: _app(service) for service in SERVICES}
    gateway_app = _app("gateway")
    own = {
        GATEWAY: get_openapi(title="Runyard gateway", version="1.0.0", routes=admin.router.routes)
    }
    merged = merge_documents({**own, **{name: app.openapi() for name, app in apps.items()}})
    events = {name: _asyncapi(app) for name, app in {**apps, "gateway": gateway_app}.items()}
    return {"openapi.json": merged, "asyncapi.json": events}


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def problems() -> list[str]:
    """The documents in docs/api/ that differ from what the code generates."""
    return [
        name
        for name, document in documents().items()
        if not (API_DIR / name).exists() or (API_DIR / name).read_text() != render(document)
    ]


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """JSON paths where two documents differ (a readable summary of a stale document)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(old.keys() | new.keys()):
            where = f"{path}/{key}"
            if key not in new:
                found.append(f"- {where}")
            elif key not in old:
                found.append(f"+ {where}")
            else:
                found.extend(differences(old[key], new[key], where))
        return found
    return [] if old == new else [f"~ {path}: {json.dumps(old)[:80]} -> {json.dumps(new)[:80]}"]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        generated = documents()
        stale = problems()
        for name in stale:
            print(f"docs/api/{name} is stale: run uv run python docs/gen_api.py")
            if (API_DIR / name).exists():
                old = json.loads((API_DIR / name).read_text())
                for line in differences(old, json.loads(render(generated[name]))):
                    print("  ", line)
        return 1 if stale else 0
    API_DIR.mkdir(exist_ok=True)
    for name, document in documents().items():
        (API_DIR / name).write_text(render(document))
        print(f"wrote docs/api/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
