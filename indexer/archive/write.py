"""Writing archives: ``backup`` (the whole library) and ``export_collection`` (one collection).

``backup`` writes one archive (format.py: a directory, or a ``.tar`` when the name ends so) with
every catalog row and the vectors of every collection's serving stores, read through the store
interface; ``export_collection`` writes the same kind of archive for one collection (its images,
jobs and their errors, duplicate groups, the models it references, its vectors). read.py puts
them back into any database and any vector backend.

Consistency: a backup or export refuses while an index or re-index job of a collection it covers
is queued or running, holds the collections' writer locks while it reads (no embedded-store
writer can change vectors meanwhile) and reads the catalog in one snapshot transaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from indexer.archive.common import (
    ROLES,
    VECTOR_BATCH,
    ArchiveReport,
    catalog_tables,
    dinoseek_version,
    writer_locks,
)
from indexer.archive.format import ArchiveWriter
from indexer.catalog.models import ACTIVE_JOB_STATUSES, Base, Collection, DuplicateGroup, Image, Job, ModelRecord, utcnow
from indexer.catalog.names import check_collection_name
from indexer.catalog.schema import current_revision
from indexer.errors import Busy, NotFound
from indexer.jobs import vector_writing_kinds
from indexer.library import Library


def _refuse_active_jobs(conn: Connection | Session, collection_ids: list[int] | None) -> None:
    """A backup never runs beside an index or re-index of what it covers: catalog and vectors would disagree."""
    writers = vector_writing_kinds()
    query = (select(Job.id, Job.kind, Job.status, Collection.name).join(Collection, Collection.id == Job.collection_id)
             .where(Job.kind.in_(list(writers)), Job.status.in_(ACTIVE_JOB_STATUSES)).order_by(Job.id))
    if collection_ids is not None:
        query = query.where(Job.collection_id.in_(collection_ids))
    busy = conn.execute(query).first()
    if busy is not None:
        raise Busy(f"collection {busy.name!r} is being {writers[busy.kind].activity} by job {busy.id} "
                   f"({busy.status}); back it up when "
                   "that job is done, so the catalog and the vectors agree")


@contextmanager
def _snapshot(library: Library) -> Iterator[Connection]:
    """A read-only connection that sees one state of the catalog throughout."""
    engine = library.catalog.engine
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin() as transaction:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("BEGIN")  # pysqlite opens no transaction for reads; WAL snapshots at the first read
            try:
                yield conn
            finally:
                transaction.rollback()


# ---------------------------------------------------------------------------------------- writing
def backup(library: Library, out_path: str | os.PathLike) -> ArchiveReport:
    """Write the whole library (every catalog row, every collection's serving vectors) to one archive."""
    return _write_archive(library, out_path, None)


def export_collection(library: Library, name: str, out_path: str | os.PathLike) -> ArchiveReport:
    """Write one collection (rows, models it references, vectors) to an archive for ``import_collection``."""
    check_collection_name(name)
    with library.catalog.session() as s:
        library.get_collection(s, name)  # NotFound names it
    return _write_archive(library, out_path, name)


def _write_archive(library: Library, out_path: str | os.PathLike, only: str | None) -> ArchiveReport:
    with library.catalog.session() as s:
        names = [only] if only else list(s.scalars(select(Collection.name)))
        ids = list(s.scalars(select(Collection.id).where(Collection.name == only))) if only else None
        _refuse_active_jobs(s, ids)  # refuse at once rather than after waiting for a lock
    writer = ArchiveWriter(out_path)
    report = ArchiveReport(str(writer.out), "collection" if only else "library")
    try:
        with writer_locks(library, names), _snapshot(library) as conn, Session(bind=conn) as session:
            collections = list(session.scalars(select(Collection).where(Collection.name == only) if only
                                               else select(Collection).order_by(Collection.name)))
            if only and not collections:
                raise NotFound(f"no collection named {only!r}")
            unlocked = sorted({c.name for c in collections} - set(names))
            if unlocked:
                raise Busy(f"collection {unlocked[0]!r} was created while the backup started; try again")
            _refuse_active_jobs(session, [c.id for c in collections] if only else None)
            filters = _export_filters(session, collections[0]) if only else {}
            for table in catalog_tables():
                if only and table.name not in filters:
                    continue
                query = select(table).order_by(*table.primary_key.columns)
                if only:
                    query = query.where(filters[table.name])
                report.rows[table.name] = writer.write_rows(table, conn.execute(query.execution_options(yield_per=2000)))
            models = list(session.scalars(select(ModelRecord).where(filters["models"]) if only
                                          else select(ModelRecord).order_by(ModelRecord.id)))
            stores = []
            for c in collections:
                stores += _write_vectors(library, writer, session, c)
                report.collections.append(c.name)
        for name in names:  # the stores this call opened
            library.hand_back_stores(name)
        report.vectors = {f"{e['collection']}.{e['role']}": e["count"] for e in stores}
        writer.commit({
            "kind": report.kind, "dinoseek_version": dinoseek_version(), "alembic_revision": _revision(library),
            "created_at": utcnow().isoformat(),
            "source": {"database": library.catalog.engine.dialect.name, "vector_backend": library.backend.name},
            "models": [{"id": m.id, "digest": m.digest, "arch": m.arch, "dim": m.dim, "pooling": m.pooling,
                        "image_size": m.image_size, "source": m.source} for m in models],
            "collections": [{"name": c.name, "id": c.id, "store_generation": c.store_generation,
                             "model_id": c.model_id} for c in collections],
            "counts": {"rows": report.rows, "vectors": report.vectors},
            "stores": stores,
        })
    except BaseException:
        writer.abandon()
        raise
    return report


def _revision(library: Library) -> str | None:
    return current_revision(library.catalog)


def _export_filters(conn: Session, collection: Collection) -> dict:
    """Per exported table, the condition that picks the collection's rows."""
    job_ids = select(Job.id).where(Job.collection_id == collection.id)
    model_ids = {collection.model_id} | set(conn.scalars(select(Image.model_id).where(
        Image.collection_id == collection.id).distinct()))
    for params in conn.scalars(select(Job.params).where(Job.collection_id == collection.id)):
        model_ids |= {(params or {}).get("model_id"), (params or {}).get("from_model_id")}
    t = Base.metadata.tables
    return {
        "models": t["models"].c.id.in_(sorted(i for i in model_ids if i is not None)),
        "collections": t["collections"].c.id == collection.id,
        "images": t["images"].c.collection_id == collection.id,
        "jobs": t["jobs"].c.collection_id == collection.id,
        "job_errors": t["job_errors"].c.job_id.in_(job_ids),
        "duplicate_groups": t["duplicate_groups"].c.collection_id == collection.id,
        "duplicate_members": t["duplicate_members"].c.group_id.in_(
            select(DuplicateGroup.id).where(DuplicateGroup.collection_id == collection.id)),
        "image_features": t["image_features"].c.image_id.in_(select(Image.id).where(Image.collection_id == collection.id)),
        "duplicate_edges": t["duplicate_edges"].c.collection_id == collection.id,
        "duplicate_decisions": t["duplicate_decisions"].c.collection_id == collection.id,
        "trash_entries": t["trash_entries"].c.collection_id == collection.id,
    }


def _write_vectors(library: Library, writer: ArchiveWriter, session: Session, collection: Collection) -> list[dict]:
    """The collection's serving stores into ``vectors/<name>/``, scrolled out in batches."""
    stores = library.stores_for(session, collection)
    if stores is None:
        return []
    entries = []
    for role, store in zip(ROLES, (stores.global_, stores.patches)):
        count, spec = store.count(), store.spec
        base = f"vectors/{collection.name}/{role}"
        entry = {"collection": collection.name, "role": role, "generation": collection.store_generation,
                 "store": spec.name, "dim": spec.dim, "precision": spec.precision, "count": count,
                 "ids": f"{base}.ids.npy", "vectors": f"{base}.vectors.npy"}
        ids_out = writer.npy(entry["ids"], "<i8", count)
        vectors_out = writer.npy(entry["vectors"], "<f2" if spec.precision == "float16" else "<f4", count, spec.dim)
        try:
            for ids, vectors in store.scroll(VECTOR_BATCH):
                if ids_out.written + len(ids) > count:
                    break
                ids_out.write(ids)
                vectors_out.write(vectors)
        finally:
            ids_out.close()
            vectors_out.close()
        if ids_out.written != count or store.count() != count:
            raise Busy(f"store {spec.name!r} changed while it was being backed up ({count} vectors, then "
                       f"{store.count()}; {ids_out.written} read): stop whatever writes it and try again")
        entries.append(entry)
    return entries
