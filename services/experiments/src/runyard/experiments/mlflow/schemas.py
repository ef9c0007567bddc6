"""Request bodies of MLflow's REST API, as the stock client sends them (proto3 JSON).

Unknown fields are ignored, not refused: clients of other MLflow versions send fields this one
does not know (``run_uuid`` next to ``run_id``, ``model_id`` on a metric ...). int64 fields may
come as JSON strings (proto3 JSON allows both); pydantic's lax mode reads either.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class KeyValue(Body):
    key: str | None = None
    value: str | None = None


def as_dict(pairs: list[KeyValue]) -> dict[str, str]:
    return {p.key or "": p.value or "" for p in pairs}


class CreateExperiment(Body):
    name: str | None = None
    artifact_location: str | None = None
    tags: list[KeyValue] = Field(default_factory=list)


class ExperimentRef(Body):
    experiment_id: str | None = None


class UpdateExperiment(Body):
    experiment_id: str | None = None
    new_name: str | None = None


class SetExperimentTag(Body):
    experiment_id: str | None = None
    key: str | None = None
    value: str | None = None


class DeleteExperimentTag(Body):
    experiment_id: str | None = None
    key: str | None = None


class SearchExperiments(Body):
    max_results: int | None = None
    page_token: str | None = None
    filter: str | None = None
    order_by: list[str] = Field(default_factory=list)
    view_type: str | int | None = None


class CreateRun(Body):
    experiment_id: str | None = None
    user_id: str | None = None
    run_name: str | None = None
    start_time: int | None = None
    tags: list[KeyValue] = Field(default_factory=list)


class RunRef(Body):
    run_id: str | None = None
    run_uuid: str | None = None

    @property
    def id(self) -> str | None:
        return self.run_id or self.run_uuid


class UpdateRun(RunRef):
    status: str | None = None
    end_time: int | None = None
    run_name: str | None = None


class MetricIn(Body):
    key: str | None = None
    value: Any = None
    timestamp: int | None = None
    step: int = 0
    #: MLflow 3: the logged model (and dataset) the value is also about
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class LogMetric(RunRef, MetricIn):
    def metric(self) -> MetricIn:
        """The value as one metric of a batch."""
        return MetricIn(
            key=self.key,
            value=self.value,
            timestamp=self.timestamp,
            step=self.step,
            model_id=self.model_id,
            dataset_name=self.dataset_name,
            dataset_digest=self.dataset_digest,
        )


class LogParam(RunRef):
    key: str | None = None
    value: str | None = None


class SetTag(RunRef):
    key: str | None = None
    value: str | None = None


class DeleteTag(RunRef):
    key: str | None = None


class LogModel(RunRef):
    model_json: str | None = None


class LogBatch(RunRef):
    metrics: list[MetricIn] = Field(default_factory=list)
    params: list[KeyValue] = Field(default_factory=list)
    tags: list[KeyValue] = Field(default_factory=list)


class Dataset(Body):
    name: str | None = None
    digest: str | None = None
    source_type: str | None = None
    source: str | None = None
    schema_: str | None = Field(default=None, alias="schema")
    profile: str | None = None


class DatasetInput(Body):
    tags: list[KeyValue] = Field(default_factory=list)
    dataset: Dataset | None = None


class ModelInput(Body):
    model_id: str | None = None


class ModelOutput(Body):
    model_id: str | None = None
    step: int = 0


class LogInputs(RunRef):
    datasets: list[DatasetInput] = Field(default_factory=list)
    models: list[ModelInput] = Field(default_factory=list)


class LogOutputs(RunRef):
    models: list[ModelOutput] = Field(default_factory=list)


class SearchRuns(Body):
    experiment_ids: list[str] = Field(default_factory=list)
    filter: str | None = None
    run_view_type: str | int | None = None
    max_results: int | None = None
    order_by: list[str] = Field(default_factory=list)
    page_token: str | None = None
