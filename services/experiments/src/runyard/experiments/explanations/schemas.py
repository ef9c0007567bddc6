"""Request and response bodies of explanations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runyard.experiments.schemas import Input, JsonObject, Path

ExplanationMethod = Literal[
    "shap", "lime", "integrated_gradients", "grad_cam", "saliency", "attention", "other"
]


class ExplanationCreate(Input):
    method: ExplanationMethod
    signal_id: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    #: attributions, feature importances, heat maps ... (size limited by the service's setting)
    explanation_data: JsonObject
    file_path: Path | None = None


class ExplanationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    experiment_id: uuid.UUID
    method: str
    signal_id: str | None
    explanation_data: dict[str, Any]
    file_path: str | None
    created_at: datetime
    updated_at: datetime
