"""SQLAlchemy models of the catalog: collections, models, images, jobs and duplicate groups.

The Alembic migrations in ``migrations/versions`` create exactly these tables; a test compares
the two and fails when they drift apart.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

IMAGE_STATUSES = ("pending", "indexed", "failed")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_JOB_STATUSES = ("queued", "running")
CHUNK_STATUSES = ("pending", "done")
DUPLICATE_KINDS = ("exact", "near", "similar")
DECISION_KINDS = ("keep", "discard", "not_duplicate")


def utcnow() -> datetime:
    """Now, timezone-aware: every timestamp the catalog records."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class ModelRecord(Base):
    """A checkpoint that produced vectors, identified by the SHA-256 of its weights."""

    __tablename__ = "models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    arch: Mapped[str] = mapped_column(String(32))
    dim: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    image_size: Mapped[int] = mapped_column(Integer)
    pooling: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Collection(Base):
    """A named library; bound to one model the first time it receives vectors."""

    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    # which stores serve the collection: a re-index builds generation n+1 beside n, then swaps
    store_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the kind of store that holds its vectors (a backend name: faiss, qdrant-edge, qdrant-server);
    # NULL until a library first opens it (collections older than the column)
    vector_backend: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # folders whose pictures duplicate review never discards nor moves to the trash (absolute paths)
    reference_folders: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # the review's thresholds on judged pairs ({"near": copy probability, "similar": cosine}): groups
    # are made of the pairs at or above them, by the review and by every later scan
    review_thresholds: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    model: Mapped[ModelRecord | None] = relationship()


# Names that differ only in case would share store files on a case-insensitive filesystem (macOS,
# Windows, many NAS shares): the catalog keeps them apart as one name.
Index("uq_collections_name_folded", func.lower(Collection.name), unique=True)


class Image(Base):
    """One file of a collection: where it is, what its bytes are, what it looked like, and its state."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("collection_id", "path", name="uq_images_collection_path"),
        Index("ix_images_collection_sha256", "collection_id", "sha256"),
        Index("ix_images_collection_status", "collection_id", "status"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    phash: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # 64-bit pHash, signed (ingest/phash.py)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    mtime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    format: Mapped[str | None] = mapped_column(String(16), nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    orientation: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    camera: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"), nullable=True)
    indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    patch_rows: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    patch_cols: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    client_name: Mapped[str | None] = mapped_column(String(255), nullable=True)  # an upload's file name
    collection: Mapped[Collection] = relationship()


class ImageFeatures(Base):
    """An image's local features for verification (ingest/local_features.py), computed at indexing."""

    __tablename__ = "image_features"
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    # the version of the extractor that found them (local_features.EXTRACTOR): an older one's are
    # found again by the next index, as missing ones are
    extractor: Mapped[int] = mapped_column(Integer, server_default="1")


def features_from(extractor: int) -> ColumnElement[bool]:
    """SQL truth of an image (outer-joined to its features) having features found by ``extractor``
    or a later one: false where it has none."""
    return func.coalesce(ImageFeatures.extractor, 0) >= extractor


class Job(Base):
    """A unit of work users can watch: totals and counters are updated in place by whoever runs it."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    scanned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    indexed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    skipped: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # of the skipped, files whose local features were found again (missing, or an older extractor's)
    refreshed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    errors: Mapped[list[JobError]] = relationship(order_by="JobError.id", cascade="all, delete-orphan")


class JobChunk(Base):
    """A slice of a job's images that one task processes (of a duplicate scan: a slice of its
    pairs, ``image_ids`` the pairs and ``results`` their evidence). Its switch to ``done`` and the
    job's counters change in one transaction, so a chunk that runs twice is counted once."""

    __tablename__ = "job_chunks"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_chunks_job_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    image_ids: Mapped[list] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    indexed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    refreshed: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[list | None] = mapped_column(JSON, nullable=True)  # staged rows of a re-index, a scan's evidence
    starts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # tasks that began it (start_chunk)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class JobError(Base):
    """One file a job could not process, and why (a row each, so concurrent workers only insert)."""

    __tablename__ = "job_errors"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)


class DuplicateGroup(Base):
    """A set of images found to be copies of each other (``exact``/``near``) or of one scene (``similar``)."""

    __tablename__ = "duplicate_groups"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    evidence: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the weakest link's evidence scores
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    members: Mapped[list[DuplicateMember]] = relationship(order_by="DuplicateMember.image_id",
                                                          cascade="all, delete-orphan")


class DuplicateMember(Base):
    __tablename__ = "duplicate_members"
    group_id: Mapped[int] = mapped_column(ForeignKey("duplicate_groups.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)


class DuplicateEdge(Base):
    """A pair the last scan judged (``near`` or ``similar``) with its scores: what groups are rebuilt
    from when the review's thresholds move, without scanning again."""

    __tablename__ = "duplicate_edges"
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    a: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    b: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    copy_probability: Mapped[float] = mapped_column(Float)
    descriptor: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class DuplicateDecision(Base):
    """A reviewer's decision: keep or discard an image, or a pair that is not a duplicate (kept
    apart by every later scan). ``image_id`` < ``other_image_id`` for a pair."""

    __tablename__ = "duplicate_decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    other_image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), nullable=True,
                                                       index=True)
    rule: Mapped[str | None] = mapped_column(String(255), nullable=True)  # the keep rule that made it, if any
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    __table_args__ = (UniqueConstraint("kind", "image_id", "other_image_id", name="uq_duplicate_decisions"),)


class TrashEntry(Base):
    """A picture moved to a trash folder inside its allowed root and removed from the index; restoring
    moves it back and indexes it again."""

    __tablename__ = "trash_entries"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(Integer)  # the id it had (its row is gone)
    original_path: Mapped[str] = mapped_column(Text)
    trash_path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    client_name: Mapped[str | None] = mapped_column(String(255), nullable=True)  # an upload's file name, given back
    trashed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    restored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    restore_job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


def failed_image(error: str, **values) -> dict:
    """The column values of an image that failed (``error`` says why): no model, no vectors."""
    return {"status": "failed", "error": error, "model_id": None, "indexed_at": None, "patch_rows": None,
            "patch_cols": None, **values}


def update_images(session: Session, rows: list[dict]) -> None:
    """Update image rows by id, one executemany per column set; a row deleted meanwhile (an image
    removed through the API while its chunk ran) is skipped rather than failing the whole commit."""
    table = Image.__table__
    for keys in {tuple(sorted(row)) for row in rows}:
        columns = [k for k in keys if k != "id"]
        statement = table.update().where(table.c.id == bindparam("b_id")).values(
            {k: bindparam(f"b_{k}") for k in columns})
        session.execute(statement, [{f"b_{k}": row[k] for k in keys} for row in rows if tuple(sorted(row)) == keys])


def replace_image_features(session: Session, features: dict[int, bytes], extractor: int,
                           dropped: list[int] = ()) -> None:
    """Store these images' local features, found by ``extractor`` (replacing what they had), and
    drop those of ``dropped``; an image deleted meanwhile gets none."""
    table = ImageFeatures.__table__
    ids = sorted(set(features) | set(dropped))
    for start in range(0, len(ids), 500):
        session.execute(table.delete().where(table.c.image_id.in_(ids[start:start + 500])))
    wanted = sorted(features)
    alive: set[int] = set()
    for start in range(0, len(wanted), 500):
        alive |= set(session.scalars(select(Image.id).where(Image.id.in_(wanted[start:start + 500]))))
    rows = [{"image_id": i, "data": features[i], "extractor": extractor} for i in wanted if i in alive]
    if rows:
        session.execute(table.insert(), rows)
