from __future__ import annotations

import uuid
from pathlib import Path as FsPath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from runyard.experiments.datasets import service
from runyard.experiments.datasets.schemas import (
    DatasetCreate,
    DatasetOut,
    DatasetUpdate,
    SamplesOut,
    SignalBatch,
    SignalBatchResult,
    SignalOut,
)
from runyard.experiments.deps import SettingsDep
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.pagination import DEFAULT_LIMIT, CursorParam, Limit, Page
from runyard.shared.runtime import SessionDep

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=DatasetOut)
async def create_dataset(
    body: DatasetCreate, session: SessionDep, principal: CurrentPrincipal
) -> DatasetOut:
    dataset = await service.create_dataset(session, principal=principal, data=body)
    return DatasetOut.model_validate(dataset)


@router.get("", response_model=Page[DatasetOut])
async def list_datasets(
    session: SessionDep,
    principal: CurrentPrincipal,
    owner_id: Annotated[
        uuid.UUID | None, Query(description="admins and viewers: only this owner's datasets")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[DatasetOut]:
    rows, next_cursor = await service.list_datasets(
        session, principal=principal, limit=limit, cursor=cursor, owner_id=owner_id
    )
    return Page[DatasetOut](
        items=[DatasetOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.get("/{dataset_id}", response_model=DatasetOut)
async def get_dataset(
    dataset_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> DatasetOut:
    dataset = await service.get_dataset(session, principal=principal, dataset_id=dataset_id)
    return DatasetOut.model_validate(dataset)


@router.patch("/{dataset_id}", response_model=DatasetOut)
async def update_dataset(
    dataset_id: uuid.UUID, body: DatasetUpdate, session: SessionDep, principal: CurrentPrincipal
) -> DatasetOut:
    dataset = await service.update_dataset(
        session, principal=principal, dataset_id=dataset_id, data=body
    )
    return DatasetOut.model_validate(dataset)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses={409: {"description": "experiments still use the dataset"}},
)
async def delete_dataset(
    dataset_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> Response:
    """Delete the dataset and its signals, and the signal files its generation or upload
    wrote (they no longer count against your storage quota)."""
    await service.delete_dataset(
        session, principal=principal, dataset_id=dataset_id, data_dir=FsPath(settings.data_dir)
    )
    return Response(status_code=204)


@router.get("/{dataset_id}/signals", response_model=Page[SignalOut])
async def list_signals(
    dataset_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    fault_class: Annotated[str | None, Query(max_length=100)] = None,
    severity: Annotated[str | None, Query(max_length=50)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: CursorParam = None,
) -> Page[SignalOut]:
    rows, next_cursor = await service.list_signals(
        session,
        principal=principal,
        dataset_id=dataset_id,
        limit=limit,
        cursor=cursor,
        fault_class=fault_class,
        severity=severity,
    )
    return Page[SignalOut](
        items=[SignalOut.model_validate(r) for r in rows], next_cursor=next_cursor
    )


@router.post("/{dataset_id}/signals", status_code=201, response_model=SignalBatchResult)
async def add_signals(
    dataset_id: uuid.UUID, body: SignalBatch, session: SessionDep, principal: CurrentPrincipal
) -> SignalBatchResult:
    """Up to 10,000 signals with their features; signal ids the dataset has are skipped."""
    return await service.add_signals(
        session, principal=principal, dataset_id=dataset_id, signals=body.signals
    )


@router.get(
    "/{dataset_id}/signals/{signal_id}/samples",
    response_model=SamplesOut,
    responses={404: {"description": "no such signal, or its samples are not stored by Runyard"}},
)
async def signal_samples(
    dataset_id: uuid.UUID,
    signal_id: Annotated[str, Path(min_length=1, max_length=255)],
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    buckets: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    from_index: Annotated[int | None, Query(ge=0)] = None,
    to_index: Annotated[int | None, Query(ge=0)] = None,
) -> SamplesOut:
    """A generated or imported signal's waveform downsampled for a chart: per bucket of
    consecutive samples its first sample's index, its min and its max (spikes survive, as in an
    experiment's history); zoom by asking for a narrower ``from_index``..``to_index``."""
    return await service.signal_samples(
        session,
        principal=principal,
        dataset_id=dataset_id,
        signal_id=signal_id,
        data_dir=FsPath(settings.data_dir),
        max_bytes=settings.import_max_expanded_bytes,
        buckets=buckets,
        from_index=from_index,
        to_index=to_index,
    )
