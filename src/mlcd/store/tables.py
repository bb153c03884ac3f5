"""SQLAlchemy Core tables of the metadata store (SQLite and PostgreSQL alike).

The Alembic migrations in ``migrations/`` create exactly these tables; a test compares the
two. Timestamps are UTC seconds since the epoch as floats (portable, sortable, cheap).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = 32  # uuid4().hex
KEY = 250
DIGEST = 80  # hex + ".dir"
#: Param and tag values up to this many characters are in the (key, value) indexes that run
#: search uses; on PostgreSQL longer ones are left out (a B-tree entry must fit a third of a
#: page), so a query adds ``length(value) <= TEXT_INDEX_MAX`` when its literal is shorter.
TEXT_INDEX_MAX = 600
_SHORT_TEXT = text(f"length(value) <= {TEXT_INDEX_MAX}")

# ------------------------------------------------------------------ runs and tracking
runs = Table(
    "runs",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(KEY), nullable=True),
    Column("kind", String(32), nullable=False, default="manual"),  # pipeline | manual | stage
    Column("status", String(16), nullable=False),  # running | finished | failed | killed
    Column("parent_id", String(ID), ForeignKey("runs.id", ondelete="SET NULL"), nullable=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("git_commit", String(64), nullable=True),
    Column("git_dirty", Boolean, nullable=True),
    Column("user", String(KEY), nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Index("ix_runs_started_at", "started_at"),
    Index("ix_runs_parent_id", "parent_id"),
)

run_params = Table(
    "run_params",
    metadata,
    Column("run_id", String(ID), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=True),
    Column("value_num", Float, nullable=True),  # the value as a number when it is one
    # (key, value, run_id) indexes answer "runs whose param/metric/tag X is ..." from the index
    # alone, without visiting the table: the difference between 100 ms and 25 ms at 100k runs.
    Index("ix_run_params_key_value", "key", "value_num", "run_id"),
    Index("ix_run_params_key_text", "key", "value", "run_id", postgresql_where=_SHORT_TEXT),
    # A search's per-run seek "does run R have KEY with a value ..." from the index alone
    # (migration 0008): the primary key finds the row but not the value.
    Index("ix_run_params_run_key_num", "run_id", "key", "value_num"),
)

run_tags = Table(
    "run_tags",
    metadata,
    Column("run_id", String(ID), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=True),
    Index("ix_run_tags_key_value", "key", "value", "run_id", postgresql_where=_SHORT_TEXT),
)

# Every logged point (series); `run_latest_metrics` keeps the latest per key for fast queries.
run_metrics = Table(
    "run_metrics",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(ID), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("key", String(KEY), nullable=False),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False, default=0),
    Column("timestamp", Float, nullable=False),
    Index("ix_run_metrics_run_key_step", "run_id", "key", "step"),
)

run_latest_metrics = Table(
    "run_latest_metrics",
    metadata,
    Column("run_id", String(ID), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Float, nullable=False),
    Column("step", BigInteger, nullable=False, default=0),
    Column("timestamp", Float, nullable=False),
    Index("ix_run_latest_metrics_key_value", "key", "value", "run_id"),
    Index("ix_run_latest_metrics_run_key_value", "run_id", "key", "value"),  # 0008: seeks
)

# Files a run read or wrote, and artifacts it logged: the edges of the lineage graph.
run_artifacts = Table(
    "run_artifacts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(ID), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("stage", String(KEY), nullable=True),
    Column("role", String(16), nullable=False),  # input | output | metrics | artifact | log
    Column("path", Text, nullable=False),
    Column("digest", String(DIGEST), nullable=False),
    Column("size", BigInteger, nullable=True),
    Index("ix_run_artifacts_run_id", "run_id"),
    Index("ix_run_artifacts_digest", "digest"),
)

run_stages = Table(
    "run_stages",
    metadata,
    Column("run_id", String(ID), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("stage", String(KEY), primary_key=True),
    Column("fingerprint", String(DIGEST), nullable=True),
    Column("outcome", String(16), nullable=False),  # ran | cached | skipped | failed | blocked
    Column("reason", Text, nullable=True),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("duration_s", Float, nullable=True),
    Column("log_digest", String(DIGEST), nullable=True),
    Column("error", Text, nullable=True),
)

# fingerprint -> the digests a stage produced (outs and metrics), shared by everyone.
run_cache = Table(
    "run_cache",
    metadata,
    Column("fingerprint", String(DIGEST), primary_key=True),
    Column("stage", String(KEY), nullable=False),
    Column("outputs", JSON, nullable=False),  # {path: digest}
    Column("metrics", JSON, nullable=True),  # {path: {name: value}}
    Column("run_id", String(ID), nullable=True),
    Column("created_at", Float, nullable=False),
)

# ------------------------------------------------------------------ registry
models = Table(
    "models",
    metadata,
    Column("name", String(KEY), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("description", Text, nullable=True),
    Column("next_version", Integer, nullable=False, default=1),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", String(KEY), ForeignKey("models.name", ondelete="CASCADE"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("digest", String(DIGEST), nullable=False),
    Column("run_id", String(ID), nullable=True),
    Column("source", Text, nullable=True),  # the stage out or path it came from
    Column("flavor", String(64), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(KEY), nullable=True),
    Column("tags", JSON, nullable=True),
    Column("metrics", JSON, nullable=True),  # the evaluation baseline
    Column("reference_digest", String(DIGEST), nullable=True),  # stored reference profile
    UniqueConstraint("model", "digest", name="uq_model_versions_model_digest"),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model", String(KEY), ForeignKey("models.name", ondelete="CASCADE"), primary_key=True),
    Column("alias", String(KEY), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# ------------------------------------------------------------------ audit trail
events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", Float, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("model", String(KEY), nullable=True),
    Column("version", Integer, nullable=True),
    Column("alias", String(KEY), nullable=True),
    Column("from_version", Integer, nullable=True),
    Column("actor", String(KEY), nullable=True),
    Column("reason", Text, nullable=True),
    Column("run_id", String(ID), nullable=True),
    Column("report_digest", String(DIGEST), nullable=True),
    Column("details", JSON, nullable=True),
    Index("ix_events_model_at", "model", "at"),
    Index("ix_events_kind", "kind"),
)

# ------------------------------------------------------------------ production
prediction_segments = Table(
    "prediction_segments",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("model", String(KEY), nullable=False),
    Column("version", Integer, nullable=True),
    Column("path", Text, nullable=False),
    Column("digest", String(DIGEST), nullable=True),
    Column("rows", Integer, nullable=False),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    # "segment" (written by a server) or "daily" (``mlcd log compact`` merged a day's
    # segments); a daily row lists the paths it replaced, so leftover files of a compaction
    # that stopped after its commit are found and deleted by the next one.
    Column("kind", String(16), nullable=False, server_default="segment"),
    Column("replaces", JSON, nullable=True),
    Index("ix_prediction_segments_model_last", "model", "last_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("model", String(KEY), nullable=True),
    Column("label", JSON, nullable=False),
    Column("received_at", Float, nullable=False),
    Index("ix_feedback_received_at", "received_at"),
)

# Data windows of a model (continual learning): the held-out data each version was
# evaluated on ("eval", checked again by the no-forgetting gate) and the rows of the log each
# retrain took as new ("train", sampled by replay). The data itself is an object by digest.
data_windows = Table(
    "data_windows",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("model", String(KEY), nullable=False),
    Column("role", String(16), nullable=False),
    Column("name", Text, nullable=False),
    Column("digest", String(DIGEST), nullable=False),
    Column("rows", Integer, nullable=False),
    Column("first_at", Float, nullable=True),
    Column("last_at", Float, nullable=True),
    Column("version", Integer, nullable=True),
    Column("source", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("model", "role", "digest", name="uq_data_windows_model_role_digest"),
)

# Named leases: one retrain per model, one writer per output. A lease past its expiry is
# free again, so a crashed holder never blocks for ever.
locks = Table(
    "locks",
    metadata,
    Column("name", String(KEY), primary_key=True),
    Column("owner", String(KEY), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Small key/value state for daemons (last schedule tick, processed segment ids, ...).
state = Table(
    "state",
    metadata,
    Column("key", String(KEY), primary_key=True),
    Column("value", JSON, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# ------------------------------------------------------------------ access
# HTTP bearer tokens: the secret is never stored, only its SHA-256 (see ``store/tokens.py``).
tokens = Table(
    "tokens",
    metadata,
    Column("name", String(KEY), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("created_by", String(KEY), nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

# --- fleet state shared by serve replicas (issue 16) ---
# Every serving process (a "replica": host:pid) says which versions it serves, every few
# seconds; ``mlcd fleet`` and ``GET /v1/fleet`` read the view from here.
serve_replicas = Table(
    "serve_replicas",
    metadata,
    Column("model", String(KEY), primary_key=True),
    Column("replica", String(KEY), primary_key=True),
    Column("host", String(KEY), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("url", Text, nullable=True),
    Column("versions", JSON, nullable=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("seen_at", Float, nullable=False),
)

# Each replica's outcomes per canary arm over the guard's window (requests, errors, latency
# histogram): the fleet's canary verdict sums them, so it is decided once for all replicas.
serve_canary_stats = Table(
    "serve_canary_stats",
    metadata,
    Column("model", String(KEY), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("replica", String(KEY), primary_key=True),
    Column("arm", String(16), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("histogram", JSON, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# A canary version switched off for the whole fleet: the first replica to insert the row
# records the one ``serve.canary_disabled`` event; the others follow the row.
serve_canary_off = Table(
    "serve_canary_off",
    metadata,
    Column("model", String(KEY), primary_key=True),
    Column("alias", String(KEY), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("reason", Text, nullable=False),
    Column("details", JSON, nullable=True),
    Column("decided_by", String(KEY), nullable=False),
    Column("at", Float, nullable=False),
)

# --- experiment queue (issue 13) ---
# Experiments waiting for a worker (``mlcd exp run --queue``, sweep trials). A worker claims
# one with a conditional UPDATE (queued -> running) and heartbeats while it runs; a worker that
# died is detected by its heartbeat or its pid and its experiment requeued once, then failed.
exp_queue = Table(
    "exp_queue",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(KEY), nullable=False),
    Column("kind", String(16), nullable=False),  # run | trial (settings fixed) | optuna
    Column("settings", JSON, nullable=False),  # ["[FILE:]KEY=VALUE", ...]
    Column("base", String(64), nullable=True),
    Column("options", JSON, nullable=True),  # {"executor": ..., "jobs": ...}
    Column("sweep_id", String(ID), nullable=True),  # the sweep's parent run
    Column("trial", Integer, nullable=True),
    Column("status", String(16), nullable=False),  # queued|running|done|failed|killed|skipped
    Column("attempts", Integer, nullable=False, default=0),
    Column("worker", String(KEY), nullable=True),  # host:pid of the worker that holds it
    Column("heartbeat_at", Float, nullable=True),
    Column("kill_requested", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("run_id", String(ID), nullable=True),
    Column("log_path", Text, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_exp_queue_status_created_at", "status", "created_at"),
    Index("ix_exp_queue_sweep_id", "sweep_id"),
)
