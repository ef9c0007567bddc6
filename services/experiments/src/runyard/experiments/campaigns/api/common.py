"""The API shape every campaign kind shares: ``POST`` a campaign, ``GET`` the list (newest
first; by status and, for admins and viewers, owner) and ``GET`` one.

No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
runtime, and they name the kind's own models, which exist only in ``add_campaign_routes``.
"""

import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from fastapi import APIRouter

from runyard.experiments.api import add_owned_list_route
from runyard.experiments.campaigns.service import core
from runyard.shared.identity import CurrentPrincipal
from runyard.shared.runtime import SessionDep


def add_campaign_routes(
    router: APIRouter,
    kind: core.CampaignKind[Any],
    *,
    create: Callable[..., Awaitable[Any]],
    body_model: Any,
    out: Any,
    statuses: Any,
    create_doc: str | None = None,
) -> None:
    """Add the shared routes of ``kind`` to ``router``: ``create(session, principal=, data=)``
    makes a campaign from a ``body_model`` body, ``out`` is the campaign's response model,
    ``statuses`` the literal of its statuses and ``create_doc`` the description of the POST."""

    async def create_campaign(
        body: body_model, session: SessionDep, principal: CurrentPrincipal
    ) -> Any:
        return out.model_validate(await create(session, principal=principal, data=body))

    create_campaign.__doc__ = create_doc

    async def get_campaign(
        campaign_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
    ) -> Any:
        campaign = await core.get_campaign(
            session, kind, principal=principal, campaign_id=campaign_id
        )
        return out.model_validate(campaign)

    router.add_api_route("", create_campaign, methods=["POST"], status_code=201, response_model=out)
    add_owned_list_route(
        router,
        name="list_campaigns",
        rows=partial(core.list_campaigns, kind=kind),
        out=out,
        statuses=statuses,
        plural="campaigns",
    )
    router.add_api_route("/{campaign_id}", get_campaign, methods=["GET"], response_model=out)
