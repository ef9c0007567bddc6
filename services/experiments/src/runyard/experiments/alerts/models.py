"""Tables of alert rules: the rules, their per-(rule, experiment) evaluation state, and the
alerts they fired (migration 0015). On the experiments schema's base, so the migration checks
and the other features see them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from runyard.experiments.models import SCHEMA, Base
from runyard.shared.db import Timestamps, UUIDPrimaryKey, utcnow

KINDS = ("threshold", "not_finite", "plateau", "divergence", "gap", "lifecycle")
SCOPES = ("all", "project", "filter", "experiment")
SEVERITIES = ("info", "warning", "critical")


class AlertRule(UUIDPrimaryKey, Timestamps, Base):
    """A user's rule: what to watch (``kind`` and its ``params``), where (``scope``), how loud
    (``severity``), how often (``cooldown_s``, ``rearm``)."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        UniqueConstraint("owner_id", "name"),
        CheckConstraint(
            "kind IN ('threshold', 'not_finite', 'plateau', 'divergence', 'gap', 'lifecycle')",
            name="kind",
        ),
        CheckConstraint("scope IN ('all', 'project', 'filter', 'experiment')", name="scope"),
        CheckConstraint("cooldown_s >= 0", name="cooldown_s_not_negative"),
        Index("ix_alert_rules_owner_id_created_at_id", "owner_id", "created_at", "id"),
    )

    owner_id: Mapped[uuid.UUID]
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(10), default="warning")
    #: the kind's parameters (metric, op, value, epochs ...), validated by the API's models
    params: Mapped[dict[str, Any]] = mapped_column(JSONB)
    scope: Mapped[str] = mapped_column(String(20), default="all")
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.projects.id", ondelete="CASCADE")
    )
    experiment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE")
    )
    #: a filter-language expression (scope ``filter``)
    filter: Mapped[str | None] = mapped_column(Text)
    #: no new alert of the rule for the experiment within this many seconds of the last one
    #: (measured between the epochs' logging times)
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0)
    #: False: fires once per experiment; True: fires again after the condition cleared
    #: (``alert.resolved`` when it clears)
    rearm: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: when the rule's condition and scope were last set: epochs logged before are learnt from
    #: (best so far, recent values) but never alerted on by live evaluation
    armed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
    version: Mapped[int] = mapped_column(Integer, default=1)


class AlertState(Base):
    """What a rule remembers of one experiment: the last epoch it evaluated (epochs are
    evaluated in order, up to the contiguous epoch reached), its kind's memory (best so far,
    epochs since improvement, recent values) and whether it is firing."""

    __tablename__ = "alert_states"

    rule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.alert_rules.id", ondelete="CASCADE"), primary_key=True
    )
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"), primary_key=True
    )
    last_epoch: Mapped[int | None] = mapped_column(Integer)
    memory: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    firing: Mapped[bool] = mapped_column(Boolean, default=False)
    fired_count: Mapped[int] = mapped_column(Integer, default=0)
    last_fired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow, onupdate=utcnow
    )


class Alert(UUIDPrimaryKey, Base):
    """An alert a rule fired (``triggered``) or cleared (``resolved``) for an experiment: the
    record behind ``alert.triggered`` / ``alert.resolved`` (same id as the event's payload)."""

    __tablename__ = "alerts"
    __table_args__ = (
        CheckConstraint("status IN ('triggered', 'resolved')", name="status"),
        Index("ix_alerts_owner_id_created_at_id", "owner_id", "created_at", "id"),
        Index("ix_alerts_experiment_id_created_at_id", "experiment_id", "created_at", "id"),
        Index("ix_alerts_rule_id_created_at_id", "rule_id", "created_at", "id"),
    )

    rule_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.alert_rules.id", ondelete="CASCADE")
    )
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE")
    )
    owner_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(10))
    rule_name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    severity: Mapped[str] = mapped_column(String(10))
    experiment_name: Mapped[str] = mapped_column(String(255))
    #: the epoch that fired it (null: a lifecycle alert)
    epoch: Mapped[int | None] = mapped_column(Integer)
    #: the metric values behind it
    values: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    summary: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), default=utcnow
    )
