"""Indexing a collection: walk paths, skip what is unchanged, embed the rest, store vectors, record rows.

Files are read, hashed and decoded on worker threads while the model runs on the previous batch.
A bad file fails alone (its row says why, and so does the job). Vectors are made durable before
their catalog rows say ``indexed``, so a crash at any point loses nothing: rows left ``pending``
are simply embedded again by the next run. Identical bytes are embedded once; their copies reuse
the stored vectors.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import select, update

from indexer.catalog.models import Collection, Image, Job, JobError
from indexer.errors import InvalidRequest
from indexer.ingest.reading import FileStat, LoadedImage, decode_bytes, read_bytes, sha256_bytes, stat_file
from indexer.ingest.scan import iter_image_paths
from indexer.library import CollectionStores, Library
from indexer.patches import PATCH_SLOTS, all_patch_ids, patch_ids, pool_grid
from model.embedder import prefetch_map
from model.preprocess import ImageDecodeError

CHECKPOINT_SECONDS = 30.0  # how often finished work is made durable and committed during a long run
CHECKPOINT_SHARE = 0.1  # ...but never more often than keeps checkpoints under this share of the run

Progress = Callable[[int, int], None]


def checkpoint_interval(last_checkpoint_seconds: float) -> float:
    """Seconds until the next checkpoint, given how long the last one took (see ``_Run.checkpoint``)."""
    return max(CHECKPOINT_SECONDS, last_checkpoint_seconds / CHECKPOINT_SHARE)


@dataclass
class IndexReport:
    """What an index run did; ``to_json`` is the CLI contract's shape."""

    collection: str
    job_id: int | None = None
    scanned: int = 0
    indexed: int = 0
    skipped: int = 0
    failed: int = 0
    pruned: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"collection": self.collection, "job_id": self.job_id, "scanned": self.scanned,
                "indexed": self.indexed, "skipped": self.skipped, "failed": self.failed, "errors": self.errors}


@dataclass
class _Known:
    """An indexed image whose vectors can be reused for identical bytes."""

    image_id: int
    rows: int
    cols: int


@dataclass
class _Item:
    image_id: int
    path: str
    loaded: LoadedImage | None = None
    tensor: object = None
    stat: FileStat | None = None
    sha256: str | None = None
    error: str | None = None
    unchanged: bool = False  # same bytes as when last indexed: only the file stamp moved
    copy_of: _Known | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Run:
    """State of one index run over a collection."""

    def __init__(self, library: Library, collection: Collection, job_id: int, model_id: int,
                 report: IndexReport, progress: Progress | None) -> None:
        self.library = library
        self.embedder = library.embedder
        self.collection = collection
        self.job_id = job_id
        self.model_id = model_id
        self.report = report
        self.progress = progress
        self.stores: CollectionStores = library.stores(collection.name, self.embedder.dim, self.embedder.embed_dim)
        self.known: dict[str, _Known] = {}
        self.previous: dict[int, tuple[str | None, str, int | None, int | None]] = {}
        self.finished: list[dict] = []  # row updates waiting for the next durable checkpoint
        self.failures: list[tuple[int, str, str, FileStat | None, str | None]] = []
        self.done = 0
        self.total = 0
        self.last_checkpoint = time.monotonic()
        self.checkpoint_interval = CHECKPOINT_SECONDS

    # ---------------------------------------------------------------- per file, on worker threads
    def load(self, item: _Item) -> _Item:
        try:
            data, item.stat = read_bytes(item.path)
            item.sha256 = sha256_bytes(data)
            prev_sha, prev_status, rows, cols = self.previous.get(item.image_id, (None, "pending", None, None))
            if prev_status == "indexed" and prev_sha == item.sha256 and rows:
                item.unchanged = True
                return item
            known = self.known.get(item.sha256)
            if known is not None and known.image_id != item.image_id:
                item.copy_of = known
            max_pixels = self.library.settings.max_image_pixels
            item.loaded = decode_bytes(item.path, data, item.stat, max_pixels, target_long_side=self.embedder.image_size)
            if item.copy_of is None:
                item.tensor = self.embedder.preprocess(item.loaded.image)
            item.loaded.image = None  # the pixels are no longer needed; keep memory flat
        except ImageDecodeError as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected decoder crash still fails only this file
            item.error = f"{item.path}: cannot decode image ({type(exc).__name__}: {exc})"
        return item

    # ---------------------------------------------------------------- batches, on the main thread
    def process(self, items: Sequence[_Item]) -> None:
        embed = [it for it in items if it.error is None and not it.unchanged and it.copy_of is None]
        # identical bytes within this batch: embed the first, copy it for the rest
        first_by_sha: dict[str, _Item] = {}
        for it in list(embed):
            if it.sha256 in first_by_sha:
                embed.remove(it)
                it.copy_of = _Known(first_by_sha[it.sha256].image_id, 0, 0)  # shape filled in below
            else:
                first_by_sha[it.sha256] = it
        if embed:
            vectors, grids = self.embedder.embed_tensors([it.tensor for it in embed])
            self._replace_patches([it.image_id for it in embed])
            self.stores.global_.upsert(np.array([it.image_id for it in embed]), vectors)
            cell_ids, cell_vectors, shapes = [], [], []
            for it, grid in zip(embed, grids):
                cells = pool_grid(grid)
                rows, cols = cells.shape[:2]
                cell_ids.append(patch_ids(it.image_id, rows, cols))
                cell_vectors.append(cells.reshape(rows * cols, -1))
                shapes.append((rows, cols))
            self.stores.patches.upsert(np.concatenate(cell_ids), np.concatenate(cell_vectors))  # one write a batch
            for it, (rows, cols) in zip(embed, shapes):
                self.known.setdefault(it.sha256, _Known(it.image_id, rows, cols))
                self._finish(it, rows, cols)
                it.tensor = None
        for it in items:
            if it.error is not None:
                self._fail(it)
            elif it.unchanged:
                self._touch(it)
            elif it.copy_of is not None:
                self._copy(it)
        self.done += len(items)
        if self.progress:
            self.progress(self.done, self.total)
        if time.monotonic() - self.last_checkpoint > self.checkpoint_interval:
            self.checkpoint()

    def _replace_patches(self, image_ids: list[int]) -> None:
        stale = [i for i in image_ids if self.previous.get(i, (None, "pending", None, None))[2]]
        if stale:
            self.stores.patches.delete(all_patch_ids(stale))

    def _copy(self, it: _Item) -> None:
        source = self.known.get(it.sha256) or it.copy_of
        found, vectors = self.stores.global_.fetch(np.array([source.image_id]))
        if not len(found):
            it.error = f"{it.path}: identical to image {source.image_id}, whose vectors are missing"
            self._fail(it)
            return
        self._replace_patches([it.image_id])
        self.stores.global_.upsert(np.array([it.image_id]), vectors)
        src_ids = patch_ids(source.image_id, source.rows, source.cols)
        found_cells, cells = self.stores.patches.fetch(src_ids)
        if len(found_cells):  # copied cells keep their row/column slots
            self.stores.patches.upsert(it.image_id * PATCH_SLOTS + found_cells % PATCH_SLOTS, cells)
        self._finish(it, source.rows, source.cols)

    def _finish(self, it: _Item, rows: int, cols: int) -> None:
        info = it.loaded.info
        self.finished.append({
            "id": it.image_id, "sha256": it.sha256, "size_bytes": it.stat.size_bytes, "mtime_ns": it.stat.mtime_ns,
            "format": info.format, "width": info.width, "height": info.height, "orientation": info.orientation,
            "taken_at": info.taken_at, "camera": info.camera, "status": "indexed", "error": None,
            "model_id": self.model_id, "indexed_at": _now(), "patch_rows": rows, "patch_cols": cols,
        })
        self.report.indexed += 1

    def _touch(self, it: _Item) -> None:
        self.finished.append({"id": it.image_id, "size_bytes": it.stat.size_bytes, "mtime_ns": it.stat.mtime_ns})
        self.report.skipped += 1

    def _fail(self, it: _Item) -> None:
        self.failures.append((it.image_id, it.path, it.error, it.stat, it.sha256))
        self.report.failed += 1
        self.report.errors.append({"path": it.path, "error": it.error})

    def checkpoint(self) -> None:
        """Make stored vectors durable, then commit the rows that point at them.

        Stores that rewrite a file to persist (FAISS) get slower to checkpoint as they grow, so the
        interval stretches to keep checkpoints under a tenth of the run; a crash only means the
        rows since the last checkpoint, still ``pending``, are embedded again.
        """
        started = time.monotonic()
        failed_ids = [f[0] for f in self.failures]
        if failed_ids:  # a file that turned bad must not keep serving its old vectors
            self.stores.global_.delete(np.array(failed_ids))
            self.stores.patches.delete(all_patch_ids(failed_ids))
        self.stores.persist()
        with self.library.catalog.session() as s:
            for keys in {tuple(sorted(row)) for row in self.finished}:  # one executemany per column set
                s.execute(update(Image), [row for row in self.finished if tuple(sorted(row)) == keys])
            for image_id, path, error, stat, sha in self.failures:
                s.execute(update(Image).where(Image.id == image_id).values(
                    status="failed", error=error, sha256=sha, model_id=None, indexed_at=None,
                    size_bytes=stat.size_bytes if stat else None, mtime_ns=stat.mtime_ns if stat else None,
                    patch_rows=None, patch_cols=None))
                s.add(JobError(job_id=self.job_id, path=path, error=error))
            s.execute(update(Job).where(Job.id == self.job_id).values(
                done=Job.done + len(self.finished) + len(self.failures),
                failed=Job.failed + len(self.failures)))
        self.finished, self.failures = [], []
        self.last_checkpoint = time.monotonic()
        self.checkpoint_interval = checkpoint_interval(self.last_checkpoint - started)


def _batches(items: Iterable[_Item], size: int) -> Iterable[list[_Item]]:
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def index_paths(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], *, prune: bool = False,
                follow_symlinks: bool = False, progress: Progress | None = None, workers: int | None = None) -> IndexReport:
    """Add or refresh the images under ``paths`` in a collection (created if new); see the module doc.

    Holds the collection's writer lock for the run (embedded stores have one writer at a time;
    another ``index`` of the same collection waits)."""
    try:
        files = [str(p) for p in iter_image_paths(paths, follow_symlinks=follow_symlinks)]
    except FileNotFoundError as exc:
        raise InvalidRequest(str(exc)) from exc
    with library.writer_lock(collection_name):
        return _index_files(library, collection_name, paths, files, prune, progress, workers)


def _index_files(library: Library, collection_name: str, paths: Sequence[str | os.PathLike], files: list[str],
                 prune: bool, progress: Progress | None, workers: int | None) -> IndexReport:
    report = IndexReport(collection=collection_name, scanned=len(files))
    with library.catalog.session() as s:
        collection = library.get_or_create_collection(s, collection_name)
        model = library.bind_model(s, collection)
        job = Job(collection_id=collection.id, kind="index", status="running", started_at=_now(),
                  params={"paths": [os.path.abspath(str(p)) for p in paths], "prune": prune})
        s.add(job)
        s.flush()
        if library.embedded_stores:  # we hold the writer lock, so a job still "running" lost its process
            s.execute(update(Job).where(Job.collection_id == collection.id, Job.kind == "index",
                                        Job.status == "running", Job.id != job.id).values(
                status="failed", finished_at=_now(),
                message=f"interrupted: its process died; job {job.id} picked up what it left pending"))
        rows = {r.path: r for r in s.scalars(select(Image).where(Image.collection_id == collection.id))}
        todo: list[_Item] = []
        for path in files:
            row = rows.get(path)
            try:
                st = stat_file(path)
            except OSError:
                st = None  # vanished or unreadable since the walk: let the reader report it
            if row is not None and row.status == "indexed" and st is not None and \
                    (row.size_bytes, row.mtime_ns) == (st.size_bytes, st.mtime_ns):
                report.skipped += 1
                continue
            if row is None:
                row = Image(collection_id=collection.id, path=path, status="pending")
                s.add(row)
                rows[path] = row
            todo.append(row)
        s.flush()
        job.total = len(todo)
        run = _Run(library, collection, job.id, model.id, report, progress)
        run.stores.refresh()  # another process may have written since this one opened them
        run.total = len(todo)
        for r in rows.values():
            if r.status == "indexed" and r.sha256 and r.patch_rows:
                run.known.setdefault(r.sha256, _Known(r.id, r.patch_rows, r.patch_cols))
            run.previous[r.id] = (r.sha256, r.status, r.patch_rows, r.patch_cols)
        items = [_Item(image_id=r.id, path=r.path) for r in todo]
        report.job_id = job.id
    try:
        batch = 4 * library.embedder.batch_size
        loaded = prefetch_map(run.load, items, workers=workers or library.embedder.decode_workers, window=2 * batch)
        for chunk in _batches(loaded, batch):
            run.process(chunk)
        run.checkpoint()
        if prune:
            report.pruned = prune_missing(library, collection_name, run.stores)
    except BaseException as exc:
        try:  # keep what was finished before the interruption (Ctrl-C, a store or database error)
            run.checkpoint()
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        _end_job(library, report.job_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    _end_job(library, report.job_id, "succeeded", None)
    return report


def _end_job(library: Library, job_id: int, status: str, message: str | None) -> None:
    with library.catalog.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(status=status, message=message, finished_at=_now()))


def prune_missing(library: Library, collection_name: str, stores: CollectionStores) -> int:
    """Remove the rows and vectors of files that no longer exist; returns how many went."""
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        rows = s.execute(select(Image.id, Image.path).where(Image.collection_id == collection.id)).all()
    gone = [image_id for image_id, path in rows if not os.path.lexists(path)]
    if not gone:
        return 0
    stores.global_.delete(np.array(gone))
    stores.patches.delete(all_patch_ids(gone))
    stores.persist()
    with library.catalog.session() as s:
        for start in range(0, len(gone), 500):
            s.execute(Image.__table__.delete().where(Image.id.in_(gone[start:start + 500])))
    return len(gone)
