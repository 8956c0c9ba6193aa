"""Embedding a job's chunks: read, hash and decode on threads, embed in batches, write vectors, commit.

A chunk is committed once: its switch from ``pending`` to ``done``, its image rows, its errors and
the job's counters change in one transaction, guarded by the chunk still being ``pending``. So a
chunk that runs twice (a redelivered task, a worker killed after writing) writes the same vectors
again and counts once. Vectors are made durable before the rows that point at them are committed;
rows of an unfinished chunk stay ``pending`` and are embedded again. A bad file fails alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from indexer.catalog.models import (
    Image,
    ImageFeatures,
    Job,
    JobChunk,
    JobError,
    failed_image,
    features_from,
    replace_image_features,
    update_images,
    utcnow,
)
from indexer.ingest import local_features
from indexer.ingest.phash import perceptual_hash
from indexer.ingest.reading import FileStat, LoadedImage, decode_bytes, read_bytes, sha256_bytes
from indexer.jobs.records import check_not_cancelled, given_up_reason, start_chunk
from indexer.jobs.target import Target
from indexer.library import Library
from indexer.stores import CollectionStores
from indexer.stores.patches import all_patch_ids, patch_ids, pool_grid
from indexer.stores.writes import StoreWrites
from indexer.verification import VERIFY_SIDE
from model.embedder import available_cores, prefetch_map
from model.preprocess import ImageDecodeError

CHECKPOINT_SECONDS = 30.0  # how often finished chunks are made durable and committed in a long run
CHECKPOINT_SHARE = 0.1  # ...but never more often than keeps checkpoints under this share of the run
# Decoding a file also prepares its local features (a second small decode, the grey levels, a
# frame's window: ~1.5 ms more a photo; ORB waits for the batch): two decode threads at least keep
# the model fed (docs/BENCHMARKS.md).
MIN_DECODE_WORKERS = 2

Progress = Callable[[int, int], None]


def checkpoint_interval(last_checkpoint_seconds: float) -> float:
    """Seconds until the next checkpoint, given how long the last one took (see ``ChunkRun.commit``)."""
    return max(CHECKPOINT_SECONDS, last_checkpoint_seconds / CHECKPOINT_SHARE)


@dataclass
class _Known:
    """An embedded image whose vectors identical bytes can reuse."""

    image_id: int
    rows: int
    cols: int


@dataclass(frozen=True)
class _Previous:
    """An image's catalog state when the run began: bytes it was indexed from, status, patch grid,
    and whether its local features are stored."""

    sha256: str | None
    status: str
    patch_rows: int | None
    has_features: bool = False


NOT_INDEXED = _Previous(None, "pending", None)


@dataclass(frozen=True)
class _Failure:
    """A file the run could not embed, and why (its stamp and hash when it got that far)."""

    image_id: int
    path: str
    error: str
    stat: FileStat | None = None
    sha256: str | None = None


@dataclass
class _ChunkState:
    """A chunk in flight: the rows it will commit, its failures and counters."""

    id: int
    planned: int
    remaining: int
    rows: list[dict] = field(default_factory=list)
    failures: list[_Failure] = field(default_factory=list)
    features: dict[int, bytes] = field(default_factory=dict)  # image id → its local features, to store
    indexed: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class _PendingRow:
    """Where an embedded image's row waits until its chunk commits."""

    chunk: _ChunkState
    row: dict
    path: str


@dataclass
class _Item:
    """One image on its way through the pipeline: read, hashed, decoded, then embedded or failed."""

    image_id: int
    path: str
    chunk: _ChunkState
    loaded: LoadedImage | None = None
    tensor: object = None
    stat: FileStat | None = None
    sha256: str | None = None
    phash: int | None = None
    error: str | None = None
    unchanged: bool = False  # same bytes as when last indexed: only the file stamp moved
    copy_of: _Known | None = None
    features: bytes | None = None  # local features, when this run computed them
    prepared: local_features.Prepared | None = None  # their first half, until the batch finds keypoints


class ChunkRun:
    """Embeds the images of some chunks of one job; ``commit`` makes the finished chunks durable."""

    def __init__(self, library: Library, target: Target, progress: Progress | None = None) -> None:
        self.library = library
        self.target = target
        self.embedder = target.embedder
        self.progress = progress
        self.writes = StoreWrites()
        self.known: dict[str, _Known] = {}
        self.previous: dict[int, _Previous] = {}  # image id → its catalog state when the run began
        self.pending_rows: dict[int, _PendingRow] = {}  # image id → where its row waits
        self.complete: list[_ChunkState] = []
        self.done = 0
        self.total = 0
        self.last_checkpoint = time.monotonic()
        self.checkpoint_interval = CHECKPOINT_SECONDS

    @property
    def keypoints_between_passes(self) -> bool:
        """On a CPU the forward pass wants every core: keypoints are found between its passes. On a
        GPU the decode threads find them, the CPU being theirs."""
        return self.embedder.device.type == "cpu"

    # ---------------------------------------------------------------- setup
    def prepare(self, chunks: Sequence[JobChunk]) -> list[_Item]:
        """The chunks' images, in chunk order; images deleted since planning count as skipped (so
        does an id that now names a row of another collection: SQLite may reuse a deleted id)."""
        ids = [int(i) for c in chunks for i in c.image_ids]
        rows: dict[int, tuple] = {}
        with self.library.catalog.session() as s:
            for start in range(0, len(ids), 500):
                for r in s.execute(select(Image.id, Image.path, Image.sha256, Image.status, Image.patch_rows,
                                          features_from(local_features.EXTRACTOR).label("has_features"))
                                   .outerjoin(ImageFeatures, ImageFeatures.image_id == Image.id)
                                   .where(Image.id.in_(ids[start:start + 500]),
                                          Image.collection_id == self.target.collection_id)):
                    rows[r.id] = r
        items: list[_Item] = []
        for chunk in chunks:
            present = [int(i) for i in chunk.image_ids if int(i) in rows]
            state = _ChunkState(chunk.id, planned=len(chunk.image_ids), remaining=len(present),
                                skipped=len(chunk.image_ids) - len(present))
            if not present:
                self.complete.append(state)
            for image_id in present:
                r = rows[image_id]
                if not self.target.staged:
                    self.previous[image_id] = _Previous(r.sha256, r.status, r.patch_rows, bool(r.has_features))
                items.append(_Item(image_id=image_id, path=r.path, chunk=state))
        self.total = len(items)
        return items

    # ---------------------------------------------------------------- per file, on worker threads
    def load(self, item: _Item) -> _Item:
        try:
            data, item.stat = read_bytes(item.path, self.library.settings.max_file_mb)
            item.sha256 = sha256_bytes(data)
            previous = self.previous.get(item.image_id, NOT_INDEXED)
            max_pixels = self.library.settings.max_image_pixels
            if previous.status == "indexed" and previous.sha256 == item.sha256 and previous.patch_rows:
                item.unchanged = True
                if not previous.has_features:  # indexed before features were stored, or by an older extractor
                    item.features = self._features(item, data, None)
                return item
            known = self.known.get(item.sha256)
            if known is not None and known.image_id != item.image_id:
                item.copy_of = known
            item.loaded = decode_bytes(item.path, data, item.stat, max_pixels, target_long_side=self.embedder.image_size,
                                       sha256=item.sha256)
            item.phash = perceptual_hash(item.loaded.image)
            if item.copy_of is None:
                item.tensor = self.embedder.preprocess(item.loaded.image)
            if not self.target.staged:  # a re-index changes the model, not the pictures: their features stay
                item.features = self._features(item, data, item.loaded.image)
            item.loaded.image = None  # the pixels are no longer needed; keep memory flat
        except ImageDecodeError as exc:
            item.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - an unexpected decoder crash still fails only this file
            item.error = f"{item.path}: cannot decode image ({type(exc).__name__}: {exc})"
        return item

    def _features(self, item: _Item, data: bytes, picture: PILImage.Image | None) -> bytes | None:
        """The local features of the file's bytes, from ``picture`` when it is large enough, else
        from a decode of the bytes already read at the size verification works at. With
        ``keypoints_between_passes`` only their first half: the batch finds the keypoints
        (``_detect_keypoints``) and the result is None until then."""
        if picture is None or max(picture.size) < min(VERIFY_SIDE, max(item.loaded.info.width, item.loaded.info.height)):
            picture = decode_bytes(item.path, data, item.stat, self.library.settings.max_image_pixels,
                                   target_long_side=VERIFY_SIDE, sha256=item.sha256).image
        item.prepared = local_features.prepare(picture)
        if self.keypoints_between_passes:
            return None
        return _encoded_keypoints(item)

    def loaded(self, items: Iterable[_Item], workers: int | None = None, passes: int = 4) -> Iterable[list[_Item]]:
        """The items, read and decoded on threads, in batches of ``passes`` forward passes."""
        size = passes * self.embedder.batch_size
        workers = workers or max(MIN_DECODE_WORKERS, self.embedder.decode_workers)
        stream = prefetch_map(self.load, items, workers=workers, window=2 * size)
        batch: list[_Item] = []
        for item in stream:
            batch.append(item)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch

    # ---------------------------------------------------------------- batches, on the calling thread
    def process(self, items: Sequence[_Item]) -> None:
        """Embed a batch and record its writes and rows (nothing touches the stores here)."""
        self._detect_keypoints(items)
        todo = [it for it in items if it.error is None and not it.unchanged and it.copy_of is None]
        self._find_copies_in_catalog(todo)
        embed: list[_Item] = []
        first_by_sha: dict[str, _Item] = {}
        for it in todo:
            known = self.known.get(it.sha256)
            if known is not None and known.image_id != it.image_id:
                it.copy_of = known
            elif it.sha256 in first_by_sha:  # identical bytes within this batch: embed the first only
                it.copy_of = _Known(first_by_sha[it.sha256].image_id, 0, 0)  # shape known once embedded
            else:
                first_by_sha[it.sha256] = it
                embed.append(it)
        if embed:
            vectors, grids = self.embedder.embed_tensors([it.tensor for it in embed])
            stale = [it.image_id for it in embed if self.previous.get(it.image_id, NOT_INDEXED).patch_rows]
            self.writes.drop_images(stale, patches_only=True)
            self.writes.upsert_global(np.array([it.image_id for it in embed]), vectors)
            cell_ids, cell_vectors = [], []
            for it, grid in zip(embed, grids):
                cells = pool_grid(grid)
                rows, cols = cells.shape[:2]
                cell_ids.append(patch_ids(it.image_id, rows, cols))
                cell_vectors.append(cells.reshape(rows * cols, -1))
                self.known.setdefault(it.sha256, _Known(it.image_id, rows, cols))
                self._finish(it, rows, cols)
                it.tensor = None
            self.writes.upsert_patches(np.concatenate(cell_ids), np.concatenate(cell_vectors))  # one write a batch
        for it in items:
            if it.error is not None:
                self._fail(it)
            elif it.unchanged:
                self._touch(it)
            elif it.copy_of is not None:
                source = self.known.get(it.sha256) or it.copy_of
                self.writes.copy_image(it.image_id, source.image_id, source.rows, source.cols)
                self._finish(it, source.rows, source.cols)
            it.chunk.remaining -= 1
            if it.chunk.remaining == 0:
                self.complete.append(it.chunk)
        self.done += len(items)
        if self.progress:
            self.progress(self.done, self.total)

    def _detect_keypoints(self, items: Sequence[_Item]) -> None:
        """The batch's keypoints, found on every core just before its forward pass: found beside
        it by the decode threads, the two fought for a CPU's cores (docs/BENCHMARKS.md, "Keypoints
        found between forward passes"). A picture whose keypoints cannot be found fails alone."""
        todo = [it for it in items if it.prepared is not None and it.error is None]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=available_cores()) as pool:
            found = list(pool.map(_keypoints_or_error, todo))
        for it, (features, error) in zip(todo, found):
            it.features, it.error = features, error

    def _find_copies_in_catalog(self, items: list[_Item]) -> None:
        """Indexed images of the collection with the same bytes (a live index reuses their vectors)."""
        if self.target.staged:
            return
        shas = sorted({it.sha256 for it in items if it.sha256 not in self.known})
        if not shas:
            return
        with self.library.catalog.session() as s:
            for r in s.execute(select(Image.id, Image.sha256, Image.patch_rows, Image.patch_cols).where(
                    Image.collection_id == self.target.collection_id, Image.sha256.in_(shas),
                    Image.status == "indexed", Image.patch_rows.is_not(None))):
                if r.id in self.previous:  # re-embedded by this run: its bytes may have changed
                    continue
                self.known.setdefault(r.sha256, _Known(r.id, r.patch_rows, r.patch_cols))

    def _finish(self, it: _Item, rows: int, cols: int) -> None:
        info = it.loaded.info
        row = {"id": it.image_id, "sha256": it.sha256, "phash": it.phash, "size_bytes": it.stat.size_bytes,
               "mtime_ns": it.stat.mtime_ns, "format": info.format, "width": info.width, "height": info.height,
               "orientation": info.orientation, "taken_at": info.taken_at, "camera": info.camera,
               "patch_rows": rows, "patch_cols": cols}
        it.chunk.rows.append(row)
        it.chunk.indexed += 1
        if it.features is not None:
            it.chunk.features[it.image_id] = it.features
        self.pending_rows[it.image_id] = _PendingRow(it.chunk, row, it.path)

    def _touch(self, it: _Item) -> None:
        it.chunk.rows.append({"id": it.image_id, "size_bytes": it.stat.size_bytes, "mtime_ns": it.stat.mtime_ns})
        if it.features is not None:
            it.chunk.features[it.image_id] = it.features
        it.chunk.skipped += 1

    def _fail(self, it: _Item) -> None:
        it.chunk.failures.append(_Failure(it.image_id, it.path, it.error, it.stat, it.sha256))

    # ---------------------------------------------------------------- writing and committing
    def apply_writes(self, stores: CollectionStores) -> None:
        """Replay the recorded writes into the stores; a copy whose source vanished fails its image."""
        for image_id, error in self.writes.apply(stores).items():
            pending = self.pending_rows.pop(image_id)
            pending.chunk.rows.remove(pending.row)
            pending.chunk.features.pop(image_id, None)
            pending.chunk.indexed -= 1
            pending.chunk.failures.append(_Failure(image_id, pending.path, f"{pending.path}: {error}",
                                                   sha256=pending.row.get("sha256")))

    def commit(self, stores: CollectionStores) -> int:
        """Apply pending writes, make the stores durable, then commit every finished chunk (once).
        Returns how many chunks this call committed. The caller holds the collection's writer lock."""
        started = time.monotonic()
        self.apply_writes(stores)
        complete, self.complete = self.complete, []
        self._drop_deleted(complete, stores)
        failed_ids = [f.image_id for c in complete for f in c.failures]
        if failed_ids:  # a file that turned bad must not keep serving its old vectors
            stores.global_.delete(np.array(failed_ids))
            stores.patches.delete(all_patch_ids(failed_ids))
        stores.persist()
        committed = 0
        with self.library.catalog.session() as s:
            for chunk in complete:
                committed += self._commit_chunk(s, chunk)
        for chunk in complete:
            for row in chunk.rows:
                self.pending_rows.pop(row["id"], None)
        self.last_checkpoint = time.monotonic()
        self.checkpoint_interval = checkpoint_interval(self.last_checkpoint - started)
        return committed

    def _drop_deleted(self, complete: list[_ChunkState], stores: CollectionStores) -> None:
        """Under the writer lock: images of these chunks deleted (or their ids reused elsewhere)
        since they were read lose the vectors just written for them and count as skipped."""
        if self.target.staged:
            return
        ids = [row["id"] for chunk in complete for row in chunk.rows] + [f.image_id for c in complete for f in c.failures]
        present: set[int] = set()
        with self.library.catalog.session() as s:
            for start in range(0, len(ids), 500):
                present.update(s.scalars(select(Image.id).where(Image.id.in_(ids[start:start + 500]),
                                                                 Image.collection_id == self.target.collection_id)))
        gone = [i for i in ids if i not in present]
        if not gone:
            return
        stores.global_.delete(np.array(gone))
        stores.patches.delete(all_patch_ids(gone))
        for chunk in complete:
            embedded_gone = sum(1 for row in chunk.rows if row["id"] not in present and "sha256" in row)
            chunk.indexed -= embedded_gone  # an unchanged file's row (no sha256) was counted skipped already
            chunk.skipped += embedded_gone
            chunk.skipped += sum(1 for f in chunk.failures if f.image_id not in present)
            chunk.rows = [row for row in chunk.rows if row["id"] in present]
            chunk.failures = [f for f in chunk.failures if f.image_id in present]
            for image_id in gone:
                chunk.features.pop(image_id, None)
                self.pending_rows.pop(image_id, None)

    def checkpoint_due(self) -> bool:
        return time.monotonic() - self.last_checkpoint > self.checkpoint_interval

    def _commit_chunk(self, s: Session, chunk: _ChunkState) -> int:
        failures = chunk.failures
        staged = _staged_results(chunk, failures) if self.target.staged else None
        # unchanged files (rows without sha256) whose features this run found again
        refreshed = sum(1 for row in chunk.rows if "sha256" not in row and row["id"] in chunk.features)
        flipped = s.execute(update(JobChunk).where(JobChunk.id == chunk.id, JobChunk.status == "pending").values(
            status="done", indexed=chunk.indexed, skipped=chunk.skipped, refreshed=refreshed, failed=len(failures),
            results=staged, finished_at=utcnow())).rowcount
        if flipped != 1:  # another run of this chunk committed it first; its rows are already there
            return 0
        if not self.target.staged:
            now = utcnow()
            for row in chunk.rows:
                if "sha256" in row:
                    row.update(status="indexed", error=None, model_id=self.target.model_id, indexed_at=now)
            update_images(s, chunk.rows)
            for f in failures:
                s.execute(update(Image).where(Image.id == f.image_id).values(failed_image(
                    f.error, sha256=f.sha256, size_bytes=f.stat.size_bytes if f.stat else None,
                    mtime_ns=f.stat.mtime_ns if f.stat else None)))
            replace_image_features(s, chunk.features, local_features.EXTRACTOR, dropped=[f.image_id for f in failures])
        for f in failures:
            s.add(JobError(job_id=self.target.job_id, path=f.path, error=f.error))
        s.execute(update(Job).where(Job.id == self.target.job_id).values(
            done=Job.done + chunk.planned, failed=Job.failed + len(failures),
            indexed=Job.indexed + chunk.indexed, skipped=Job.skipped + chunk.skipped, refreshed=Job.refreshed + refreshed))
        return 1


def _encoded_keypoints(item: _Item) -> bytes:
    """The item's prepared features, finished and encoded for the catalog (it lets go of them)."""
    prepared, item.prepared = item.prepared, None
    return local_features.encode(local_features.detect(prepared))


def _keypoints_or_error(item: _Item) -> tuple[bytes | None, str | None]:
    """``_encoded_keypoints``, or why they could not be found."""
    try:
        return _encoded_keypoints(item), None
    except Exception as exc:  # noqa: BLE001 - an unexpected OpenCV failure still fails only this file
        return None, f"{item.path}: cannot find local features ({type(exc).__name__}: {exc})"


def _staged_results(chunk: _ChunkState, failures: list[_Failure]) -> list[dict]:
    """A re-index's per-image outcome, JSON-safe, applied to the rows at the swap."""
    out = []
    for row in chunk.rows:
        staged = dict(row)
        if staged.get("taken_at") is not None:
            staged["taken_at"] = staged["taken_at"].isoformat()
        out.append(staged)
    out.extend({"id": f.image_id, "error": f.error} for f in failures)
    return out


def pending_chunks(library: Library, job_id: int, chunk_ids: Sequence[int] | None = None) -> list[JobChunk]:
    """The job's chunks still to embed (of ``chunk_ids`` only, when given), in order."""
    with library.catalog.session() as s:
        query = select(JobChunk).where(JobChunk.job_id == job_id, JobChunk.status == "pending")
        if chunk_ids is not None:
            query = query.where(JobChunk.id.in_(list(chunk_ids)))
        return list(s.scalars(query.order_by(JobChunk.seq)))


def run_chunks_locked(library: Library, job_id: int, target: Target, *, progress: Progress | None = None,
                      workers: int | None = None) -> int:
    """Every pending chunk of the job, streamed through one pipeline (batches run across chunk
    boundaries), writing as it goes and committing on an interval; a cancelled job stops after
    the batch in hand, committing its finished chunks (JobCancelled). The caller holds the writer lock."""
    chunks = pending_chunks(library, job_id)
    if not chunks:
        return 0
    run = ChunkRun(library, target, progress)
    stores = run.target.stores(library)
    stores.refresh()  # another process may have written since this one opened them
    items = run.prepare(chunks)
    try:
        for batch in run.loaded(items, workers):
            run.process(batch)
            run.apply_writes(stores)  # keep memory flat: vectors go to the stores batch by batch
            if run.checkpoint_due():
                run.commit(stores)
            check_not_cancelled(library, job_id)
        run.commit(stores)
    except BaseException:
        try:  # keep the chunks finished before the interruption (Ctrl-C, a store or database error)
            run.commit(stores)
        except Exception:  # noqa: BLE001 - the original error is the one to report
            pass
        raise
    return len(chunks)


def _job_running(library: Library, job_id: int) -> bool:
    with library.catalog.session() as s:
        return s.scalar(select(Job.status).where(Job.id == job_id)) == "running"


def run_chunk(library: Library, job_id: int, chunk_id: int, target: Target, *, workers: int | None = None) -> bool:
    """One chunk, as a worker runs it: embed without touching the stores, then take the writer
    lock only to apply the writes, persist and commit. False if the chunk was already done or
    the job is no longer running. A chunk started more than DINOSEEK_MAX_CHUNK_STARTS times
    (each earlier start killed its process) fails its files with the reason and reads none."""
    starts = start_chunk(library, job_id, chunk_id)
    chunks = pending_chunks(library, job_id, [chunk_id]) if starts is not None else []
    if not chunks:
        return False
    run = ChunkRun(library, target)
    items = run.prepare(chunks)
    if starts > library.settings.max_chunk_starts:
        for item in items:
            item.error = f"{item.path}: {given_up_reason(starts)}"
        run.process(items)
    else:
        for batch in run.loaded(items, workers, passes=1):  # small batches: decoding overlaps the model sooner
            run.process(batch)
    with library.writer_lock(run.target.collection_name):
        if not pending_chunks(library, job_id, [chunk_id]):  # a redelivered copy of this task won the race
            return False
        if not _job_running(library, job_id):  # failed or cancelled meanwhile: write nothing more for it
            return False
        stores = run.target.stores(library)
        stores.refresh()
        try:
            return run.commit(stores) == 1
        finally:
            library.release_stores(run.target.collection_name)  # embedded stores: one owner at a time
