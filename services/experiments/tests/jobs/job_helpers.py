"""What the job tests share: ``from services.experiments.tests.jobs.job_helpers import ...``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runyard.experiments.config import Settings


async def generate(client, who, **fields: Any) -> dict[str, Any]:
    body = {"name": "synthetic-pump", "signals_per_combination": 2, "seed": 11, **fields}
    response = await client.post("/api/v1/dataset-generations", json=body, headers=who.headers)
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/api/v1/dataset-generations/{response.json()['id']}"
    return response.json()


async def job(client, who, kind: str, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/{kind}/{job_id}", headers=who.headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def signals_of(client, who, dataset_id: str) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/datasets/{dataset_id}/signals?limit=500", headers=who.headers
    )
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def csv_text(rows: list[tuple[str, str, list[Any]]]) -> str:
    header = "signal_id,fault_class," + ",".join(f"s{i}" for i in range(len(rows[0][2])))
    lines = [header] + [
        f"{sid},{fault}," + ",".join(map(str, values)) for sid, fault, values in rows
    ]
    return "\n".join(lines) + "\n"


def tone(frequency: float, n: int = 64, rate: float = 64.0) -> list[float]:
    return [round(float(np.sin(2 * np.pi * frequency * i / rate)), 6) for i in range(n)]


async def upload(client, who, filename: str, content: bytes, **fields: str) -> Any:
    return await client.post(
        "/api/v1/dataset-imports",
        files={"file": (filename, content, "application/octet-stream")},
        data={"name": "field-recordings", "sample_rate_hz": "64", **fields},
        headers=who.headers,
    )


def upload_area(settings: Settings, who) -> Path:
    """Where the caller's uploads are stored, and the only place a path import reads."""
    return Path(settings.data_dir) / "uploads" / str(who.id)
