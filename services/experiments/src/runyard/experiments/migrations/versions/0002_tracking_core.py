"""tracking core: users read model, datasets, signals, training runs, tags, saved searches;
experiments gain notes, model paths, tags, best-epoch bookkeeping and a maintained tsvector

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCHEMA = "experiments"
METRIC_INDEXES = {"val_accuracy": "DESC", "val_loss": "ASC"}


def _timestamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.Uuid(), primary_key=True),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("full_name", sa.String(255)),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        schema=SCHEMA,
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("num_signals", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("fault_types", postgresql.JSONB(), nullable=False),
        sa.Column("severity_levels", postgresql.JSONB(), nullable=False),
        sa.Column("file_path", sa.String(1024)),
        sa.Column("meta_data", postgresql.JSONB(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("owner_id", "name", name="uq_datasets_owner_id_name"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_datasets_owner_id_created_at", "datasets", ["owner_id", "created_at"], schema=SCHEMA
    )
    op.create_index("ix_datasets_created_at", "datasets", ["created_at"], schema=SCHEMA)
    op.create_table(
        "signals",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "dataset_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.datasets.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("signal_id", sa.String(255), nullable=False),
        sa.Column("fault_class", sa.String(100)),
        sa.Column("severity", sa.String(50)),
        sa.Column("file_path", sa.String(1024)),
        sa.Column("rms", sa.Float()),
        sa.Column("kurtosis", sa.Float()),
        sa.Column("dominant_frequency", sa.Float()),
        *_timestamps(),
        sa.UniqueConstraint("dataset_id", "signal_id", name="uq_signals_dataset_id_signal_id"),
        schema=SCHEMA,
    )
    op.create_index("ix_signals_dataset_id_id", "signals", ["dataset_id", "id"], schema=SCHEMA)

    # --- experiments: new columns, dataset reference, per-owner unique names, search support
    for column in (
        sa.Column("notes", sa.Text()),
        sa.Column("model_path", sa.String(1024)),
        sa.Column("onnx_path", sa.String(1024)),
        sa.Column("results_dir", sa.String(1024)),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("hpo_campaign_id", sa.Uuid()),
        sa.Column("best_metric", sa.String(100), nullable=False, server_default="val_loss"),
        sa.Column("best_mode", sa.String(3), nullable=False, server_default="min"),
        sa.Column("best_value", sa.Float()),
        sa.Column("last_epoch", sa.Integer()),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.String(64)),
            nullable=False,
            server_default=sa.text("'{}'::varchar[]"),
        ),
        sa.Column("search_vector", postgresql.TSVECTOR()),
    ):
        op.add_column("experiments", column, schema=SCHEMA)
    op.create_check_constraint(
        "best_mode", "experiments", "best_mode IN ('min','max')", schema=SCHEMA
    )
    op.create_foreign_key(
        "fk_experiments_dataset_id_datasets",
        "experiments",
        "datasets",
        ["dataset_id"],
        ["id"],
        source_schema=SCHEMA,
        referent_schema=SCHEMA,
    )
    op.create_unique_constraint(
        "uq_experiments_owner_id_name", "experiments", ["owner_id", "name"], schema=SCHEMA
    )
    op.drop_index("ix_experiments_owner_id", "experiments", schema=SCHEMA)
    # keyset pages: a user's own experiments, and everyone's (admins, viewers), newest first
    op.create_index(
        "ix_experiments_owner_id_created_at_id",
        "experiments",
        ["owner_id", "created_at", "id"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_experiments_created_at_id", "experiments", ["created_at", "id"], schema=SCHEMA
    )
    op.create_index(
        "ix_experiments_owner_id_status_created_at",
        "experiments",
        ["owner_id", "status", "created_at"],
        schema=SCHEMA,
    )
    op.create_index(
        "ix_experiments_owner_id_model_type",
        "experiments",
        ["owner_id", "model_type"],
        schema=SCHEMA,
    )
    op.create_index("ix_experiments_model_type", "experiments", ["model_type"], schema=SCHEMA)
    op.create_index("ix_experiments_dataset_id", "experiments", ["dataset_id"], schema=SCHEMA)
    op.create_index(
        "ix_experiments_search_vector",
        "experiments",
        ["search_vector"],
        postgresql_using="gin",
        schema=SCHEMA,
    )
    op.create_index(
        "ix_experiments_tags", "experiments", ["tags"], postgresql_using="gin", schema=SCHEMA
    )
    op.create_index(
        "ix_experiments_metrics",
        "experiments",
        [sa.text("metrics jsonb_path_ops")],
        postgresql_using="gin",
        schema=SCHEMA,
    )
    op.create_index(
        "ix_experiments_hyperparameters",
        "experiments",
        [sa.text("hyperparameters jsonb_path_ops")],
        postgresql_using="gin",
        schema=SCHEMA,
    )
    # A JSON number as float8, NULL for anything else (a string, a missing key): metric and
    # parameter comparisons never fail on a value of the wrong type.
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.jsonb_number(doc jsonb, key text) RETURNS double precision
            LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
              SELECT CASE WHEN jsonb_typeof(doc -> key) = 'number'
                          THEN (doc ->> key)::double precision END
            $$"""
    )
    # The two metrics searches sort by most, in the order they are sorted by (best first; the
    # query language sorts missing values last either way): one index for a user's own
    # experiments, one for everyone's (admins, viewers). Other keys are filtered by scan.
    for metric, direction in METRIC_INDEXES.items():
        key = f"{SCHEMA}.jsonb_number(metrics, '{metric}') {direction} NULLS LAST, id {direction}"
        op.execute(
            f"CREATE INDEX ix_experiments_owner_id_metric_{metric} "
            f"ON {SCHEMA}.experiments (owner_id, {key})"
        )
        op.execute(f"CREATE INDEX ix_experiments_metric_{metric} ON {SCHEMA}.experiments ({key})")
    # name LIKE 'prefix%' whatever the database's collation
    op.execute(
        f"CREATE INDEX ix_experiments_name_pattern ON {SCHEMA}.experiments "
        "(name varchar_pattern_ops)"
    )
    op.execute(
        f"""CREATE FUNCTION {SCHEMA}.experiments_search_vector() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
              NEW.search_vector :=
                setweight(to_tsvector('english', coalesce(NEW.name, '')), 'A')
                || setweight(to_tsvector('english', coalesce(NEW.model_type, '')), 'B')
                || setweight(to_tsvector('english', array_to_string(NEW.tags, ' ')), 'B')
                || setweight(to_tsvector('english',
                     coalesce(NEW.description, '') || ' ' || coalesce(NEW.notes, '')), 'C');
              RETURN NEW;
            END $$"""
    )
    op.execute(
        f"""CREATE TRIGGER experiments_search_vector
            BEFORE INSERT OR UPDATE OF name, model_type, tags, description, notes
            ON {SCHEMA}.experiments FOR EACH ROW
            EXECUTE FUNCTION {SCHEMA}.experiments_search_vector()"""
    )
    op.execute(f"UPDATE {SCHEMA}.experiments SET name = name")  # noqa: S608 (fill the vector)

    op.create_table(
        "training_runs",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "experiment_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("train_loss", sa.Float()),
        sa.Column("val_loss", sa.Float()),
        sa.Column("train_accuracy", sa.Float()),
        sa.Column("val_accuracy", sa.Float()),
        sa.Column("learning_rate", sa.Float()),
        sa.Column("duration_seconds", sa.Float()),
        sa.Column("checkpoint_path", sa.String(1024)),
        sa.Column("metrics", postgresql.JSONB(), nullable=False),
        *_timestamps(),
        # also the (experiment_id, epoch) index of ordered epoch queries
        sa.UniqueConstraint("experiment_id", "epoch", name="uq_training_runs_experiment_id_epoch"),
        schema=SCHEMA,
    )
    op.create_table(
        "tags",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("color", sa.String(7), nullable=False),
        sa.Column("usage_count", sa.Integer(), nullable=False, server_default="0"),
        *_timestamps(),
        sa.UniqueConstraint("owner_id", "slug", name="uq_tags_owner_id_slug"),
        sa.UniqueConstraint("owner_id", "name", name="uq_tags_owner_id_name"),
        sa.CheckConstraint("usage_count >= 0", name="usage_count_not_negative"),
        schema=SCHEMA,
    )
    op.create_index("ix_tags_slug", "tags", ["slug"], schema=SCHEMA)
    op.create_table(
        "experiment_tags",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column(
            "experiment_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.experiments.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "tag_id",
            sa.Uuid(),
            sa.ForeignKey(f"{SCHEMA}.tags.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("added_by", sa.Uuid()),
        *_timestamps(),
        sa.UniqueConstraint(
            "experiment_id", "tag_id", name="uq_experiment_tags_experiment_id_tag_id"
        ),
        schema=SCHEMA,
    )
    op.create_index("ix_experiment_tags_tag_id", "experiment_tags", ["tag_id"], schema=SCHEMA)
    op.create_table(
        "saved_searches",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("q", sa.Text()),
        sa.Column("order_by", sa.String(200)),
        sa.Column("is_pinned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("usage_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        *_timestamps(),
        sa.UniqueConstraint("owner_id", "name", name="uq_saved_searches_owner_id_name"),
        schema=SCHEMA,
    )


def downgrade() -> None:
    for table in ("saved_searches", "experiment_tags", "tags", "training_runs"):
        op.drop_table(table, schema=SCHEMA)
    op.execute(f"DROP TRIGGER experiments_search_vector ON {SCHEMA}.experiments")
    op.execute(f"DROP FUNCTION {SCHEMA}.experiments_search_vector()")
    op.drop_index("ix_experiments_name_pattern", "experiments", schema=SCHEMA)
    for metric in METRIC_INDEXES:
        op.drop_index(f"ix_experiments_owner_id_metric_{metric}", "experiments", schema=SCHEMA)
        op.drop_index(f"ix_experiments_metric_{metric}", "experiments", schema=SCHEMA)
    op.execute(f"DROP FUNCTION {SCHEMA}.jsonb_number(jsonb, text)")
    for index in (
        "ix_experiments_hyperparameters",
        "ix_experiments_metrics",
        "ix_experiments_tags",
        "ix_experiments_search_vector",
        "ix_experiments_dataset_id",
        "ix_experiments_model_type",
        "ix_experiments_owner_id_model_type",
        "ix_experiments_owner_id_status_created_at",
        "ix_experiments_created_at_id",
        "ix_experiments_owner_id_created_at_id",
    ):
        op.drop_index(index, "experiments", schema=SCHEMA)
    op.create_index("ix_experiments_owner_id", "experiments", ["owner_id"], schema=SCHEMA)
    op.drop_constraint("uq_experiments_owner_id_name", "experiments", schema=SCHEMA)
    op.drop_constraint("fk_experiments_dataset_id_datasets", "experiments", schema=SCHEMA)
    op.drop_constraint("ck_experiments_best_mode", "experiments", schema=SCHEMA)
    for column in (
        "search_vector",
        "tags",
        "last_epoch",
        "best_value",
        "best_mode",
        "best_metric",
        "hpo_campaign_id",
        "duration_seconds",
        "results_dir",
        "onnx_path",
        "model_path",
        "notes",
    ):
        op.drop_column("experiments", column, schema=SCHEMA)
    op.drop_table("signals", schema=SCHEMA)
    op.drop_table("datasets", schema=SCHEMA)
    op.drop_table("users", schema=SCHEMA)
