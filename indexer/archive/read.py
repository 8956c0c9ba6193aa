"""Reading archives: ``restore`` (a backup, into an empty catalog and empty stores) and ``import_collection``.

``restore`` puts a backup into an empty catalog and empty stores of any database and any vector
backend, keeping every id. ``import_collection`` adds an exported collection to a library that
may hold others, under new ids (patch point ids are rebuilt from the new image ids).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import numpy as np
from sqlalchemy import Integer, func, select, text
from sqlalchemy.engine import Connection

from indexer.archive.checks import checked_row
from indexer.archive.common import (
    LOCK_TIMEOUT,
    ROLES,
    ROW_BATCH,
    VECTOR_BATCH,
    ArchiveReport,
    catalog_tables,
    database_name,
    dinoseek_version,
    writer_locks,
)
from indexer.archive.format import Archive, ArchiveError, TargetNotEmpty, decode_row, insert_params, insert_statement
from indexer.catalog.database import Catalog
from indexer.catalog.models import Base, Collection, ModelRecord
from indexer.catalog.names import check_collection_name, check_no_case_twin
from indexer.catalog.schema import current_revision, head_revision, upgrade
from indexer.library import Library
from indexer.stores import CollectionStores
from indexer.stores.patches import PATCH_SLOTS

log = logging.getLogger(__name__)


def _open_checked(path: str | os.PathLike, kind: str) -> Archive:
    """The archive at ``path``, checked whole: its kind, its schema revision, every file's checksum."""
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
                f"{m['alembic_revision']}; this dinoseek ({dinoseek_version()}) is at revision {head}. Restore it with "
                f"dinoseek {m['dinoseek_version']}, run `dinoseek db upgrade`, and back it up again")
        known = {t.name for t in catalog_tables()}
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
    catalog = Catalog(library_settings.database_url)
    try:
        if current_revision(catalog) is None:
            upgrade(catalog)
    finally:
        catalog.dispose()


def _refuse_nonempty_catalog(library: Library) -> None:
    with library.catalog.engine.connect() as conn:
        held = [(t.name, conn.scalar(select(func.count()).select_from(t))) for t in catalog_tables()]
    held = [(name, n) for name, n in held if n]
    if held:
        rows = ", ".join(f"{name}: {n} rows" for name, n in held)
        raise TargetNotEmpty(f"the catalog at {database_name(library)} is not empty ({rows}); restore needs a "
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
        with writer_locks(library, names):
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
                    for table in catalog_tables():
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
        decoded = checked_row(table.name, decode_row(table, row, where), where)
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
    for table in catalog_tables():
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
                                         f"{database_name(library)}; import it under another name with --as NAME")
                check_no_case_twin(s, name)
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


def _insert_all(conn: Connection, table, rows: list[dict]) -> None:
    """Insert ``rows`` (all with the same columns) in batches."""
    for start in range(0, len(rows), ROW_BATCH):
        batch = rows[start:start + ROW_BATCH]
        conn.execute(insert_statement(table, list(batch[0])), insert_params(batch))


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
            yield checked_row(table, decode_row(t[table], row, where), where)

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

    features: list[dict] = []
    report.rows["image_features"] = 0

    def flush_features() -> None:
        if features:
            conn.execute(insert_statement(t["image_features"], ["image_id", "data", "extractor"]), insert_params(features))
            report.rows["image_features"] += len(features)
            features.clear()

    for row in rows("image_features"):
        features.append({"image_id": remapped(image_ids, row["image_id"], "image"), "data": row["data"],
                         "extractor": row["extractor"]})
        if len(features) >= ROW_BATCH:
            flush_features()
    flush_features()

    edges = [dict(row, collection_id=collection_id, a=remapped(image_ids, row["a"], "image"),
                  b=remapped(image_ids, row["b"], "image")) for row in rows("duplicate_edges")]
    _insert_all(conn, t["duplicate_edges"], edges)
    report.rows["duplicate_edges"] = len(edges)
    decisions = [dict(row, collection_id=collection_id, image_id=remapped(image_ids, row["image_id"], "image"),
                      other_image_id=remapped(image_ids, row["other_image_id"], "image"))
                 for row in rows("duplicate_decisions")]
    trash = [dict(row, collection_id=collection_id) for row in rows("trash_entries")]  # image_id: the id it had there
    for table, records in (("duplicate_decisions", decisions), ("trash_entries", trash)):
        for row in records:
            row.pop("id")
        _insert_all(conn, t[table], records)
        report.rows[table] = len(records)

    for table, entry in archive.manifest["tables"].items():
        if table in report.rows and report.rows[table] != entry["rows"]:
            raise ArchiveError(f"{archive.path}: imported {report.rows[table]} rows of {table}, the archive lists "
                               f"{entry['rows']}")
    order = np.argsort(np.array(old_ids, dtype=np.int64), kind="stable")
    return np.array(old_ids, dtype=np.int64)[order], np.array(new_ids, dtype=np.int64)[order]

