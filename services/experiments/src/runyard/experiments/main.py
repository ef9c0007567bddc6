from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware import Middleware

from runyard.experiments import consumers, workers
from runyard.experiments.alerts import api as alerts
from runyard.experiments.artifacts import api as artifacts
from runyard.experiments.campaigns.api import hpo, nas
from runyard.experiments.config import Settings
from runyard.experiments.datasets import api as datasets
from runyard.experiments.explanations import api as explanations
from runyard.experiments.jobs import api as jobs
from runyard.experiments.mlflow import artifacts_api as mlflow_artifacts
from runyard.experiments.mlflow import experiments_api as mlflow_experiments
from runyard.experiments.mlflow import logged_models_api as mlflow_logged_models
from runyard.experiments.mlflow import registry_api as mlflow_registry
from runyard.experiments.mlflow import runs_api as mlflow_runs
from runyard.experiments.mlflow import ui_artifacts_api as mlflow_ui_artifacts
from runyard.experiments.mlflow.errors import answer_unrouted_in_mlflow_shape
from runyard.experiments.mlflow.fast_route import LogEpochsRoute
from runyard.experiments.models import SCHEMA
from runyard.experiments.predictions import api as predictions
from runyard.experiments.projects import api as projects
from runyard.experiments.registry import api as registry
from runyard.experiments.tracking.api import experiments, saved_searches, tags
from runyard.shared.contracts import alerts as alert_contracts
from runyard.shared.contracts import experiments as contracts
from runyard.shared.contracts import models as model_contracts
from runyard.shared.events import EventPayload
from runyard.shared.runtime import ServiceSpec, create_service_app

#: in this order: a path two routers could match goes to the first
ROUTERS = [
    mlflow_experiments.router,
    mlflow_experiments.ajax_router,
    mlflow_runs.router,
    mlflow_runs.ajax_router,
    mlflow_artifacts.router,
    mlflow_ui_artifacts.router,
    mlflow_logged_models.router,
    mlflow_registry.router,
    artifacts.router,
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
    projects.router,
    alerts.router,
    alerts.alerts,
    predictions.router,
    registry.router,
]

PUBLISHES: list[type[EventPayload]] = [
    contracts.DatasetCreated,
    contracts.DatasetUpdated,
    contracts.DatasetDeleted,
    contracts.ExperimentCreated,
    contracts.ExperimentUpdated,
    contracts.ExperimentDeleted,
    contracts.ExperimentRestored,
    contracts.ExperimentStarted,
    contracts.ExperimentPaused,
    contracts.ExperimentResumed,
    contracts.ExperimentCompleted,
    contracts.ExperimentFailed,
    contracts.ExperimentCancelled,
    contracts.ExperimentEpochsLogged,
    contracts.ExperimentStalled,
    contracts.HpoCampaignStarted,
    contracts.HpoCampaignCompleted,
    contracts.NasCampaignCompleted,
    contracts.NasTrialCompleted,
    contracts.DatasetGenerationProgressed,
    contracts.DatasetImportProgressed,
    contracts.DatasetGenerationCompleted,
    contracts.DatasetGenerationFailed,
    contracts.DatasetImportCompleted,
    contracts.DatasetImportFailed,
    contracts.ProjectCreated,
    contracts.ProjectUpdated,
    contracts.ProjectDeleted,
    contracts.ProjectRestored,
    contracts.ArtifactCreated,
    contracts.ArtifactDeleted,
    contracts.LoggedModelArtifactCreated,
    contracts.LoggedModelArtifactDeleted,
    alert_contracts.AlertTriggered,
    alert_contracts.AlertResolved,
    model_contracts.ModelRegistered,
    model_contracts.ModelVersionCreated,
    model_contracts.ModelVersionAliasSet,
    model_contracts.ModelVersionAliasRemoved,
    model_contracts.ModelVersionArchived,
    model_contracts.ModelVersionDriftDetected,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(
        ServiceSpec(
            name="experiments",
            schema=SCHEMA,
            settings=settings or Settings(),
            routers=ROUTERS,
            handlers=consumers.handlers(),
            publishes=PUBLISHES,
            workers={
                "dataset-jobs": workers.run_dataset_jobs,
                "stalled-runs": workers.watch_stalled_runs,
                "epoch-events": workers.write_epoch_events,
                "artifact-gc": workers.collect_artifact_blobs,
                "prediction-partitions": workers.maintain_prediction_partitions,
                "prediction-drift": workers.check_prediction_drift,
            },
            description="Datasets, signals, experiments and their lifecycle, training runs, "
            "tags, search and saved searches; projects and artifacts; HPO and NAS campaigns, "
            "explanations, dataset generation and import jobs.",
        )
    )
    answer_unrouted_in_mlflow_shape(app)
    # innermost: a training loop's MLflow metrics skip the router (``mlflow/fast_route.py``)
    app.user_middleware.append(Middleware(LogEpochsRoute))
    return app
