"""Response bodies of artifacts (an upload's body is the file itself)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ArtifactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    experiment_id: uuid.UUID
    #: where the file sits among the experiment's artifacts: ``plots/loss.png``
    path: str
    size: int
    #: hex SHA-256 of the content (also the download's ETag)
    sha256: str
    content_type: str
    created_at: datetime
    updated_at: datetime
