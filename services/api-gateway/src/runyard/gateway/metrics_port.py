"""The gateway's Prometheus metrics, on a listener of their own.

The API port faces the internet, and the metrics tell an outsider a lot (request and error rates
per route, upstream circuit states, queue depths), so the gateway does not serve ``/metrics``
there: a separate listener on ``GATEWAY_METRICS_HOST:GATEWAY_METRICS_PORT`` does (any path
answers the metrics). On Kubernetes it is a container port that no Service exposes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from prometheus_client import start_http_server

from runyard.shared.logging import get_logger

log = get_logger(__name__)

METRICS_PATH = "/metrics"


@dataclass
class MetricsListener:
    server: WSGIServer
    thread: Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    async def close(self) -> None:
        await asyncio.to_thread(self.server.shutdown)
        self.server.server_close()


def start_metrics_listener(host: str, port: int) -> MetricsListener:
    server, thread = start_http_server(port, addr=host)
    listener = MetricsListener(server, thread)
    log.info("gateway.metrics.listening", address=f"{host}:{listener.port}")
    return listener


def remove_api_port_metrics(app: FastAPI) -> None:
    """Drop the ``/metrics`` route every service gets (``install_ops_routes``) from the app that
    serves the API port: there it answers 404 like any unknown path."""
    app.router.routes[:] = [
        route for route in app.router.routes if getattr(route, "path", None) != METRICS_PATH
    ]
