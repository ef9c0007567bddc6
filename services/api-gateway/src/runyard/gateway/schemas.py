"""Response models of the gateway's admin endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from runyard.shared.pagination import Page


class RequestLog(BaseModel):
    id: int
    request_id: str
    request_time: datetime
    method: str
    endpoint: str
    route: str
    service: str | None
    status_code: int
    response_time_ms: float
    request_size_bytes: int
    response_size_bytes: int
    ip_address: str | None
    user_agent: str | None
    user_id: uuid.UUID | None
    api_key_id: uuid.UUID | None
    auth_method: str | None
    error_message: str | None
    request_payload_sample: Any
    response_payload_sample: Any


class MetricsSummary(BaseModel):
    id: int
    aggregation_type: Literal["minute", "hour"]
    period_start: datetime
    period_end: datetime
    method: str
    endpoint: str
    total_requests: int
    successful_requests: int
    failed_requests: int
    server_errors: int
    error_rate: float
    requests_per_second: float
    avg_response_time_ms: float
    p50_response_time_ms: float
    p95_response_time_ms: float
    p99_response_time_ms: float


class AuditEntry(BaseModel):
    id: int
    user_id: uuid.UUID
    username: str | None
    action: str
    status: Literal["success", "failure"]
    status_code: int
    details: dict[str, Any]
    error_message: str | None
    created_at: datetime


class RequestLogPage(Page[RequestLog]):
    pass


class MetricsPage(Page[MetricsSummary]):
    pass


class AuditPage(Page[AuditEntry]):
    pass
