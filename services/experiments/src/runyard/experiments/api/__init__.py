"""HTTP API of the experiments service (every path under ``/api/v1``, as the gateway exposes it)."""

from runyard.experiments.api import (
    datasets,
    experiments,
    explanations,
    hpo,
    jobs,
    nas,
    saved_searches,
    tags,
)

routers = [
    experiments.router,
    hpo.pruning,
    explanations.router,
    datasets.router,
    tags.router,
    saved_searches.router,
    hpo.router,
    nas.router,
    jobs.generations,
    jobs.imports,
]

__all__ = ["routers"]
