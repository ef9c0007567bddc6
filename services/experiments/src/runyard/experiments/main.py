from __future__ import annotations

from fastapi import FastAPI

from runyard.experiments.api import router
from runyard.experiments.config import Settings
from runyard.experiments.models import SCHEMA
from runyard.shared.contracts import experiments as contracts
from runyard.shared.runtime import ServiceSpec, create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        ServiceSpec(
            name="experiments",
            schema=SCHEMA,
            settings=settings or Settings(),
            routers=[router],
            publishes=[contracts.ExperimentCreated, contracts.ExperimentCompleted],
            description="Datasets, experiments, training runs and searches.",
        )
    )
