"""Backup and restore of a whole library; export and import of one collection. Backend-portable.

``backup`` writes one archive (``indexer/archive.py``: a directory, or a ``.tar`` when the name
ends so) with every catalog row and the vectors of every collection's serving stores, read
through the store protocol; ``restore`` puts it into an empty catalog and empty stores of any
database and any vector backend, keeping every id. ``export_collection`` writes the same kind of
archive for one collection (its images, jobs and their errors, duplicate groups, the models it
references, its vectors); ``import_collection`` adds it to a library that may hold others,
under new ids (patch point ids are rebuilt from the new image ids).

Consistency: a backup or export refuses while an index or re-index job of a collection it covers
is queued or running, holds the collections' writer locks while it reads (no embedded-store
writer can change vectors meanwhile) and reads the catalog in one snapshot transaction.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import Integer, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from indexer.archive import Archive, ArchiveError, ArchiveWriter, TargetNotEmpty, decode_row, insert_params, insert_statement
from indexer.catalog.models import Base, Collection, DuplicateGroup, Image, Job, ModelRecord
from indexer.errors import Busy, NotFound
from indexer.library import CollectionStores, Library, check_collection_name
from indexer.patches import PATCH_SLOTS

log = logging.getLogger(__name__)

LOCK_TIMEOUT = 60.0  # seconds to wait for a collection's writer lock (workers hold it for one chunk's write)
ROW_BATCH = 1000
VECTOR_BATCH = 4096
ACTIVE = ("queued", "running")
ROLES = ("global", "patches")
# what an export carries: the collection's rows; job_chunks are a job's working state, not its record
EXPORT_TABLES = ("models", "collections", "images", "jobs", "job_errors", "duplicate_groups", "duplicate_members")

__all__ = ["ArchiveError", "ArchiveReport", "TargetNotEmpty", "backup", "export_collection", "import_collection",
           "prepare_restore_target", "restore"]


@dataclass
class ArchiveReport:
    """What a backup, restore, export or import moved."""

    archive: str
    kind: str
    collections: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    vectors: dict[str, int] = field(default_factory=dict)  # "<collection>.<role>" -> count

    def to_json(self) -> dict:
        return {"archive": self.archive, "kind": self.kind, "collections": self.collections, "rows": self.rows,
                "vectors": self.vectors}


def _version() -> str:
    from dinoseek import __version__

    return __version__


def _tables():
    return Base.metadata.sorted_tables  # parents before children


def _database_name(library: Library) -> str:
    return library.catalog.engine.url.render_as_string(hide_password=True)


# ---------------------------------------------------------------------------------------- consistency
def _refuse_active_jobs(conn: Connection | Session, collection_ids: list[int] | None) -> None:
    """A backup never runs beside an index or re-index of what it covers: catalog and vectors would disagree."""
    query = (select(Job.id, Job.kind, Job.status, Collection.name).join(Collection, Collection.id == Job.collection_id)
             .where(Job.kind.in_(("index", "reindex")), Job.status.in_(ACTIVE)).order_by(Job.id))
    if collection_ids is not None:
        query = query.where(Job.collection_id.in_(collection_ids))
    busy = conn.execute(query).first()
    if busy is not None:
        what = "re-indexed" if busy.kind == "reindex" else "indexed"
        raise Busy(f"collection {busy.name!r} is being {what} by job {busy.id} ({busy.status}); back it up when "
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


@contextmanager
def _writer_locks(library: Library, names: list[str]) -> Iterator[None]:
    with ExitStack() as stack:
        for name in sorted(set(names)):  # one order everywhere: two backups never deadlock
            stack.enter_context(library.writer_lock(name, timeout=LOCK_TIMEOUT))
        yield


def _release(library: Library, names: list[str]) -> None:
    """An Edge shard has one owner: let go of the ones this call opened, so indexers can write."""
    if library.settings.vector_backend == "qdrant" and not library.settings.qdrant_url:
        for name in names:
            library.release_stores(name)


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
        with _writer_locks(library, names), _snapshot(library) as conn, Session(bind=conn) as session:
            collections = list(session.scalars(select(Collection).where(Collection.name == only) if only
                                               else select(Collection).order_by(Collection.name)))
            if only and not collections:
                raise NotFound(f"no collection named {only!r}")
            unlocked = sorted({c.name for c in collections} - set(names))
            if unlocked:
                raise Busy(f"collection {unlocked[0]!r} was created while the backup started; try again")
            _refuse_active_jobs(session, [c.id for c in collections] if only else None)
            filters = _export_filters(session, collections[0]) if only else {}
            for table in _tables():
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
        _release(library, names)
        report.vectors = {f"{e['collection']}.{e['role']}": e["count"] for e in stores}
        writer.commit({
            "kind": report.kind, "dinoseek_version": _version(), "alembic_revision": _revision(library),
            "created_at": datetime.now(timezone.utc).isoformat(),
            "source": {"database": library.catalog.engine.dialect.name, "vector_backend": library.settings.vector_backend,
                       "qdrant": None if library.settings.vector_backend != "qdrant"
                       else ("server" if library.settings.qdrant_url else "edge")},
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
    from migrations.runner import current_revision

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


# ---------------------------------------------------------------------------------------- reading
def _open_checked(path: str | os.PathLike, kind: str) -> Archive:
    """The archive at ``path``, checked whole: its kind, its schema revision, every file's checksum."""
    from migrations.runner import head_revision

    archive = Archive(path)
    try:
        m = archive.manifest
        if archive.kind != kind:
            hint = ("`dinoseek import`" if archive.kind == "collection" else "`dinoseek restore`")
            raise ArchiveError(f"{archive.path} holds a {archive.kind} archive, not a {kind} one: use {hint}")
        head = head_revision()
        if m["alembic_revision"] != head:
            raise ArchiveError(
                f"{archive.path} was written by dinoseek {m['dinoseek_version']} at catalog revision "
                f"{m['alembic_revision']}; this dinoseek ({_version()}) is at revision {head}. Restore it with "
                f"dinoseek {m['dinoseek_version']}, run `dinoseek db upgrade`, and back it up again")
        known = {t.name for t in _tables()}
        foreign = sorted(set(m["tables"]) - known)
        if foreign:
            raise ArchiveError(f"{archive.path}: table {foreign[0]!r} is not in this dinoseek's catalog")
        archive.verify()
        return archive
    except BaseException:
        archive.close()
        raise


def prepare_restore_target(library_settings) -> None:
    """A database with no schema at all (freshly created) is brought to the newest revision, so
    ``restore`` can go into it; one at another revision is left to ``dinoseek db upgrade``."""
    from indexer.catalog.database import Catalog
    from migrations import runner

    catalog = Catalog(library_settings.database_url)
    try:
        if runner.current_revision(catalog) is None:
            runner.upgrade(catalog)
    finally:
        catalog.dispose()


def _refuse_nonempty_catalog(library: Library) -> None:
    with library.catalog.engine.connect() as conn:
        held = [(t.name, conn.scalar(select(func.count()).select_from(t))) for t in _tables()]
    held = [(name, n) for name, n in held if n]
    if held:
        rows = ", ".join(f"{name}: {n} rows" for name, n in held)
        raise TargetNotEmpty(f"the catalog at {_database_name(library)} is not empty ({rows}); restore needs a "
                             "fresh database (create one, point DINOSEEK_DATABASE_URL at it, run `dinoseek restore`)")


def _dims(entries: list[dict]) -> tuple[int, int]:
    by_role = {e["role"]: e for e in entries}
    if set(by_role) != set(ROLES):
        raise ArchiveError(f"collection {entries[0]['collection']!r}: the archive holds stores "
                           f"{sorted(by_role)}, expected {list(ROLES)}")
    return int(by_role["global"]["dim"]), int(by_role["patches"]["dim"])


def _empty_stores(library: Library, name: str, entries: list[dict], generation: int) -> CollectionStores:
    """The target stores of a collection, opened; refused when they already hold vectors."""
    global_dim, patch_dim = _dims(entries)
    stores = library.stores(name, global_dim, patch_dim, generation)
    stores.refresh()
    for store in (stores.global_, stores.patches):
        held = store.count()
        if held:
            where = library.settings.qdrant_url or library.stores_dir
            library.release_stores(name)
            raise TargetNotEmpty(f"vector store {store.spec.name!r} at {where} already holds {held} vectors; "
                                 "restore and import need empty stores (a fresh DINOSEEK_HOME or server)")
    return stores


def _fill(archive: Archive, entry: dict, store, id_map=None) -> tuple[int, int]:
    """Write an archived store into ``store`` (ids through ``id_map`` when given); returns
    (written, left out because ``id_map`` has no image for them)."""
    written = skipped = 0
    for ids, vectors in archive.vectors(entry, VECTOR_BATCH):
        if id_map is not None:
            ids, keep = id_map(ids)
            vectors, skipped = vectors[keep], skipped + int((~keep).sum())
            ids = ids[keep]
        if len(ids):
            store.upsert(ids, vectors)
            written += len(ids)
    store.persist()
    return written, skipped


def _check_store_count(archive: Archive, store, expected: int) -> None:
    held = store.count()
    if held != expected:
        raise ArchiveError(f"{archive.path}: store {store.spec.name!r} holds {held} vectors after the restore, "
                           f"expected {expected}")


def _group_stores(manifest: dict) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for entry in manifest["stores"]:
        check_collection_name(entry["collection"])
        grouped.setdefault(entry["collection"], []).append(entry)
    return grouped


def restore(library: Library, in_path: str | os.PathLike) -> ArchiveReport:
    """Restore a ``backup`` archive into this library's catalog and stores, which must be empty.
    Every id is kept; the vectors go into whichever backend the library is configured with."""
    with _open_checked(in_path, "library") as archive:
        m = archive.manifest
        _refuse_nonempty_catalog(library)
        grouped = _group_stores(m)
        names = [c["name"] for c in m.get("collections", [])]
        report = ArchiveReport(str(archive.path), "library", sorted(names))
        with _writer_locks(library, names):
            targets: dict[str, CollectionStores] = {}
            try:
                for name, entries in grouped.items():
                    targets[name] = _empty_stores(library, name, entries, int(entries[0]["generation"]))
            except BaseException:
                for name in targets:
                    library.release_stores(name)
                raise
            try:
                with library.catalog.engine.begin() as conn:
                    for table in _tables():
                        report.rows[table.name] = _insert_rows(conn, archive, table)
                    _fix_sequences(conn)
                    for name, entries in grouped.items():
                        for entry in entries:
                            store = getattr(targets[name], "global_" if entry["role"] == "global" else "patches")
                            written, _ = _fill(archive, entry, store)
                            _check_store_count(archive, store, int(entry["count"]))
                            report.vectors[f"{name}.{entry['role']}"] = written
                    _check_row_counts(conn, archive, report.rows)
            except BaseException:
                for name, entries in grouped.items():  # leave nothing half-restored behind
                    _drop_quietly(library, name, int(entries[0]["generation"]))
                raise
            finally:
                for name in grouped:
                    library.release_stores(name)
    return report


def _drop_quietly(library: Library, name: str, generation: int) -> None:
    try:
        library.drop_generation(name, generation)
    except Exception as exc:  # noqa: BLE001 - the original error is the one to report
        log.warning("could not remove the partly written stores of %r: %s", name, exc)


def _insert_rows(conn: Connection, archive: Archive, table) -> int:
    count, batch, columns = 0, [], None
    for row, where in archive.rows(table.name):
        decoded = decode_row(table, row, where)
        if columns is None:
            columns = list(decoded)
        elif list(decoded) != columns:
            raise ArchiveError(f"{where}: row has columns {sorted(decoded)}, earlier rows {sorted(columns)}")
        batch.append(decoded)
        if len(batch) >= ROW_BATCH:
            conn.execute(insert_statement(table, columns), insert_params(batch))
            count, batch = count + len(batch), []
    if batch:
        conn.execute(insert_statement(table, columns), insert_params(batch))
        count += len(batch)
    return count


def _fix_sequences(conn: Connection) -> None:
    """PostgreSQL: rows inserted with their ids leave each id sequence behind; move it past them."""
    if conn.dialect.name != "postgresql":
        return  # SQLite takes max(rowid) + 1 by itself
    for table in _tables():
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not isinstance(keys[0].type, Integer) or keys[0].foreign_keys:
            continue
        column = keys[0].name
        conn.execute(text(f'SELECT setval(pg_get_serial_sequence(:table, :column), '
                          f'COALESCE((SELECT MAX("{column}") FROM "{table.name}"), 0) + 1, false)'),
                     {"table": table.name, "column": column})


def _check_row_counts(conn: Connection, archive: Archive, inserted: dict[str, int]) -> None:
    for name, entry in archive.manifest["tables"].items():
        table = Base.metadata.tables[name]
        held = conn.scalar(select(func.count()).select_from(table))
        if held != entry["rows"] or inserted.get(name) != entry["rows"]:
            raise ArchiveError(f"{archive.path}: table {name} has {held} rows after the restore, the archive "
                               f"lists {entry['rows']}")


# ---------------------------------------------------------------------------------------- import
def import_collection(library: Library, in_path: str | os.PathLike, name: str | None = None) -> ArchiveReport:
    """Add an exported collection to this library (as ``name``, default its own name), which may hold
    others: every row gets a new id, models are matched by digest, vectors are re-keyed."""
    with _open_checked(in_path, "collection") as archive:
        m = archive.manifest
        collections = [row for row, _ in archive.rows("collections")]
        if len(collections) != 1:
            raise ArchiveError(f"{archive.path}: a collection archive holds one collection, this one {len(collections)}")
        source = collections[0]
        name = check_collection_name(name or source["name"])
        entries = _group_stores(m).get(source["name"], [])
        report = ArchiveReport(str(archive.path), "collection", [name])
        with library.writer_lock(name, timeout=LOCK_TIMEOUT):
            with library.catalog.session() as s:
                if s.scalar(select(Collection.id).where(Collection.name == name)) is not None:
                    raise TargetNotEmpty(f"collection {name!r} already exists in the catalog at "
                                         f"{_database_name(library)}; import it under another name with --as NAME")
            stores = _empty_stores(library, name, entries, 0) if entries else None
            try:
                with library.catalog.engine.begin() as conn:
                    image_map = _import_rows(conn, archive, name, report)
                    for entry in entries:
                        patches = entry["role"] == "patches"
                        store = stores.patches if patches else stores.global_
                        written, skipped = _fill(archive, entry, store, _remap(image_map, patches))
                        _check_store_count(archive, store, written)
                        if skipped:
                            log.warning("import of %r: %d %s vectors belong to no image row and were left out",
                                        name, skipped, entry["role"])
                        report.vectors[f"{name}.{entry['role']}"] = written
            except BaseException:
                if stores is not None:
                    _drop_quietly(library, name, 0)
                raise
            finally:
                library.release_stores(name)
    return report


def _remap(image_map: tuple[np.ndarray, np.ndarray], patches: bool):
    """Old store ids → new ones: image ids directly, patch ids as new image id * PATCH_SLOTS + cell."""
    old, new = image_map

    def remap(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = ids // PATCH_SLOTS if patches else ids
        at = np.clip(np.searchsorted(old, images), 0, max(len(old) - 1, 0))
        keep = (old[at] == images) if len(old) else np.zeros(len(ids), dtype=bool)
        mapped = new[at] if len(old) else ids
        return (mapped * PATCH_SLOTS + ids % PATCH_SLOTS if patches else mapped), keep

    return remap


def _insert_returning(conn: Connection, table, rows: list[dict]) -> list[int]:
    """Insert rows without their ids; the new ids, in row order."""
    if not rows:
        return []
    columns = list(rows[0])
    statement = insert_statement(table, columns).returning(table.c.id, sort_by_parameter_order=True)
    return [r[0] for r in conn.execute(statement, insert_params(rows))]


def _import_rows(conn: Connection, archive: Archive, name: str, report: ArchiveReport) -> tuple[np.ndarray, np.ndarray]:
    """Insert the archive's rows under new ids; returns the image id map (old ids ascending, new ids)."""
    t = Base.metadata.tables

    def rows(table: str) -> Iterator[dict]:
        for row, where in archive.rows(table):
            yield decode_row(t[table], row, where)

    def remapped(ids: dict[int, int], value, what: str):
        if value is None:
            return None
        if value not in ids:
            raise ArchiveError(f"{archive.path}: {what} {value} is referred to but not in the archive")
        return ids[value]

    model_ids: dict[int, int] = {}
    for row in rows("models"):
        existing = conn.scalar(select(ModelRecord.id).where(ModelRecord.digest == row["digest"]))
        model_ids[row.pop("id")] = existing if existing is not None else _insert_returning(conn, t["models"], [row])[0]
    report.rows["models"] = len(model_ids)

    (collection,) = list(rows("collections"))
    collection.pop("id")
    collection.update(name=name, store_generation=0, model_id=remapped(model_ids, collection["model_id"], "model"))
    collection_id = _insert_returning(conn, t["collections"], [collection])[0]
    report.rows["collections"] = 1

    old_ids: list[int] = []
    new_ids: list[int] = []
    batch: list[dict] = []

    def flush_images() -> None:
        new_ids.extend(_insert_returning(conn, t["images"], batch))
        batch.clear()

    for row in rows("images"):
        old_ids.append(row.pop("id"))
        row.update(collection_id=collection_id, model_id=remapped(model_ids, row["model_id"], "model"))
        batch.append(row)
        if len(batch) >= ROW_BATCH:
            flush_images()
    flush_images()
    report.rows["images"] = len(new_ids)
    image_ids = dict(zip(old_ids, new_ids))

    job_ids: dict[int, int] = {}
    for row in rows("jobs"):
        old = row.pop("id")
        params = dict(row["params"] or {})
        for key in ("model_id", "from_model_id"):
            if params.get(key) is not None:
                params[key] = remapped(model_ids, params[key], "model")
        params.pop("generation", None)  # an imported collection starts again at store generation 0
        row.update(collection_id=collection_id, params=params)
        job_ids[old] = _insert_returning(conn, t["jobs"], [row])[0]
    report.rows["jobs"] = len(job_ids)
    errors = [dict(row, job_id=remapped(job_ids, row["job_id"], "job")) for row in rows("job_errors")]
    for row in errors:
        row.pop("id")
    _insert_returning(conn, t["job_errors"], errors)
    report.rows["job_errors"] = len(errors)

    group_ids: dict[int, int] = {}
    for row in rows("duplicate_groups"):
        old = row.pop("id")
        row["collection_id"] = collection_id
        group_ids[old] = _insert_returning(conn, t["duplicate_groups"], [row])[0]
    report.rows["duplicate_groups"] = len(group_ids)
    members = [{"group_id": remapped(group_ids, row["group_id"], "duplicate group"),
                "image_id": remapped(image_ids, row["image_id"], "image")} for row in rows("duplicate_members")]
    if members:
        conn.execute(insert_statement(t["duplicate_members"], ["group_id", "image_id"]), insert_params(members))
    report.rows["duplicate_members"] = len(members)

    for table, entry in archive.manifest["tables"].items():
        if table in report.rows and report.rows[table] != entry["rows"]:
            raise ArchiveError(f"{archive.path}: imported {report.rows[table]} rows of {table}, the archive lists "
                               f"{entry['rows']}")
    order = np.argsort(np.array(old_ids, dtype=np.int64), kind="stable")
    return np.array(old_ids, dtype=np.int64)[order], np.array(new_ids, dtype=np.int64)[order]

