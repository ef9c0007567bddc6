from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from runyard.experiments.config import Settings
from runyard.experiments.main import create_app
from runyard.shared.testing import running_app


@pytest.fixture
def app_with(settings: Settings) -> Callable[..., Any]:
    """``async with app_with(artifact_max_bytes=...) as client``: the service with other
    settings."""

    @asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[Any]:
        async with running_app(create_app(settings.model_copy(update=overrides))) as client:
            yield client

    return started


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's), on a free port of this test process."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_settings(moto_endpoint: str) -> dict[str, Any]:
    import uuid

    import boto3

    bucket = f"runyard-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_bucket(Bucket=bucket)
    return {
        "artifact_store": "s3",
        "artifact_s3_bucket": bucket,
        "artifact_s3_endpoint_url": moto_endpoint,
        "artifact_s3_access_key_id": "test",
        "artifact_s3_secret_access_key": "test",
        "artifact_s3_prefix": "runyard/",
    }
