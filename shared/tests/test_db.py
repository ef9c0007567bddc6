from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from runyard.shared.db import (
    TYPE_ANNOTATION_MAP,
    Timestamps,
    UUIDPrimaryKey,
    create_engine,
    schema_metadata,
)
from runyard.shared.testing import _admin_execute, _with_db


class Base(DeclarativeBase):
    metadata = schema_metadata("dbtest")
    type_annotation_map = TYPE_ANNOTATION_MAP


class Owner(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "owners"
    email: Mapped[str] = mapped_column(String(100))
    __table_args__ = (UniqueConstraint("email"),)


class Pet(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "pets"
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey(Owner.id))
    seen_at: Mapped[datetime | None]


def test_tables_live_in_the_service_schema_with_named_constraints() -> None:
    pets = Base.metadata.tables["dbtest.pets"]
    assert pets.schema == "dbtest"
    assert pets.c.id.type.python_type is uuid.UUID
    assert pets.c.created_at.type.timezone is True
    assert pets.c.seen_at.type.timezone is True
    owners = Base.metadata.tables["dbtest.owners"]
    names = {c.name for c in owners.constraints}
    assert {"pk_owners", "uq_owners_email"} <= names
    assert {fk.name for fk in pets.foreign_key_constraints} == {"fk_pets_owner_id_owners"}


async def test_rows_get_uuid_ids_and_utc_timestamps(postgres_admin_url: str) -> None:
    name = f"t_db_{uuid.uuid4().hex[:8]}"
    await _admin_execute(postgres_admin_url, f'CREATE DATABASE "{name}"')
    engine = create_engine(_with_db(postgres_admin_url, name), pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE SCHEMA dbtest"))
            await conn.run_sync(Base.metadata.create_all)
        from runyard.shared.db import create_sessionmaker

        sessionmaker = create_sessionmaker(engine, schema="dbtest")
        async with sessionmaker() as session, session.begin():
            owner = Owner(email="a@example.test")
            session.add(owner)
            await session.flush()
        assert session.info["schema"] == "dbtest"
        assert isinstance(owner.id, uuid.UUID)
        assert owner.created_at.utcoffset() is not None
        async with engine.connect() as conn:
            constraint = await conn.scalar(
                text("SELECT conname FROM pg_constraint WHERE conname = 'uq_owners_email'")
            )
        assert constraint == "uq_owners_email"
    finally:
        await engine.dispose()
        await _admin_execute(postgres_admin_url, f'DROP DATABASE "{name}" WITH (FORCE)')
