"""HTTP API of the experiments service (every path under ``/api/v1``, as the gateway exposes it)."""

from runyard.experiments.api import datasets, experiments, saved_searches, tags

routers = [experiments.router, datasets.router, tags.router, saved_searches.router]

__all__ = ["routers"]
