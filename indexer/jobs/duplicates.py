"""Duplicate scans as jobs, in chunks of pairs: planned once, each chunk verified once by whichever
process takes it, finished by the last one; the groups replace the last scan's.

``plan``: the scan's first stage (exact groups, the k-nearest-neighbour graph, each edge's cheap
evidence) is written as chunks of at most ``pairs_per_chunk`` edges, those geometry could change
first, in the order an in-process scan verifies them (``geometry.verification_order``; chunks
without any are done at once); the job's ``total`` is those pairs. ``run`` (per chunk): verify
its pairs on the stored local features, skipping those whose pictures the chunks committed so far
have joined (near_joins.py), and in one transaction guarded by the chunk still being ``pending``
mark it done with the geometry found and add its pairs to the job's ``done``, so a chunk verified
twice counts once. ``finish``: once no chunk is pending, judge every edge and save the groups. A
fleet runs the chunks on the ``cpu`` queue across its workers (workers/tasks.py); in-process, every
pending chunk is verified on every core (duplicates/geometry.py), then committed chunk by chunk.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy import select, update

from indexer.catalog.models import Collection, Image, Job, JobChunk, JobError, utcnow
from indexer.duplicates import check_threshold
from indexer.duplicates.decisions import apart_pairs
from indexer.duplicates.geometry import GeometryPool, verification_order, verify_pairs
from indexer.duplicates.groups import save_groups
from indexer.duplicates.judging import PictureCache, calibration, picture_cache
from indexer.duplicates.near_joins import NearJoins
from indexer.duplicates.scan import ScanPlan, exact_groups, first_stage, last_stage, pair_judge
from indexer.errors import InvalidRequest
from indexer.jobs.records import (
    ACTIVE,
    JobKind,
    JobPieces,
    add_job,
    check_not_cancelled,
    fail_job,
    get_job,
    given_up_reason,
    start_chunk,
)
from indexer.library import Library
from indexer.verdicts import PairEvidence
from indexer.verification import Geometry

Pair = tuple[int, int]


def create_duplicates_job(library: Library, collection_name: str, threshold: float | None = None,
                          pairs_per_chunk: int | None = None) -> int:
    """Record a duplicate scan of the collection (``queued``), in chunks of ``pairs_per_chunk``
    pairs to verify (default: the ``scan_pairs_per_chunk`` setting); returns the job id."""
    check_threshold(threshold)
    pairs_per_chunk = pairs_per_chunk or library.settings.scan_pairs_per_chunk
    if pairs_per_chunk < 1:
        raise InvalidRequest(f"pairs per chunk must be at least 1, got {pairs_per_chunk}")
    with library.catalog.session() as s:
        collection = library.get_collection(s, collection_name)
        return add_job(s, collection, DUPLICATES, {"threshold": threshold, "pairs_per_chunk": pairs_per_chunk}).id


def plan_duplicates_job(library: Library, job_id: int) -> list[int]:
    """Claim the job and write its chunks (the scan's first stage); the ids of the chunks still
    pending. A repeat (a redelivered task) finds the job planned and plans nothing."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        if job.status not in ACTIVE:
            return []
        if (job.params or {}).get("planned"):
            return _pending(s, job_id)
        if job.status == "queued":
            job.status, job.started_at = "running", utcnow()
        params = dict(job.params or {})
        name = s.get(Collection, job.collection_id).name
    plan = first_stage(library, name, params.get("threshold"))
    chunks, wanted = _chunks(job_id, plan, int(params.get("pairs_per_chunk") or library.settings.scan_pairs_per_chunk))
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        if (job.params or {}).get("planned"):  # planned meanwhile by a second delivery
            return _pending(s, job_id)
        s.add_all(chunks)
        job.total, job.done = wanted, 0
        job.params = {**params, "planned": True}
        s.flush()
        return _pending(s, job_id)


def _pending(session, job_id: int) -> list[int]:
    return list(session.scalars(select(JobChunk.id).where(JobChunk.job_id == job_id, JobChunk.status == "pending")
                                .order_by(JobChunk.seq)))


def _chunks(job_id: int, plan: ScanPlan, pairs_per_chunk: int) -> tuple[list[JobChunk], int]:
    """The plan's edges as chunk rows of at most ``pairs_per_chunk`` edges, those geometry could
    change first, in the order a scan verifies them (geometry.verification_order): ``image_ids`` the edges,
    ``results`` each edge's cheap evidence, whether it wants geometry, and (once verified) its
    geometry and whether it was skipped as joined. Chunks of edges judged without geometry are
    done at once."""
    joins = plan.near_joins()
    wanted = plan.wanted
    rest = sorted(set(joins.evidence) - set(wanted))
    chunks: list[JobChunk] = []
    ordered = verification_order(joins, wanted) + rest
    for start in range(0, len(ordered), pairs_per_chunk):
        edges = ordered[start:start + pairs_per_chunk]
        records = [_record(joins.evidence[pair], start + n < len(wanted)) for n, pair in enumerate(edges)]
        chunks.append(JobChunk(job_id=job_id, seq=len(chunks), image_ids=[list(pair) for pair in edges],
                               results=records, status="pending" if records[0][3] else "done"))
    return chunks, len(wanted)


def _record(evidence: PairEvidence, wants: bool) -> list:
    """An edge as a chunk keeps it: descriptor, normalised, hash, wants geometry, geometry, skipped."""
    return [evidence.descriptor, evidence.normalised, evidence.hash, wants, None, False]


def run_duplicates_chunk(library: Library, job_id: int, chunk_id: int) -> bool:
    """Verify one chunk's pairs and commit them (once); False if it was done already or the job
    is no longer running. A chunk started more than DINOSEEK_MAX_CHUNK_STARTS times (each earlier
    start killed its process) is committed unverified: its pairs are judged on the cheap evidence."""
    starts = start_chunk(library, job_id, chunk_id)
    if starts is None:
        return False
    with library.catalog.session() as s:
        chunk = s.get(JobChunk, chunk_id)
        edges, records, seq = [tuple(e) for e in chunk.image_ids], chunk.results, chunk.seq
    wanted = _wanted(edges, records)
    if starts > library.settings.max_chunk_starts:
        with library.catalog.session() as s:
            s.add(JobError(job_id=job_id, path=f"(pairs of chunk {seq})",
                           error=f"{len(wanted)} pairs judged without geometry: {given_up_reason(starts)}"))
        return _commit(library, job_id, chunk_id, edges, records, {}, set(), len(wanted))
    paths = _paths(library, {i for pair in wanted for i in pair})
    joins = _job_joins(library, job_id)
    joins.evidence = {pair: _evidence(record) for pair, record in zip(edges, records)}
    joins.skipped = set()
    geometry = verify_pairs(library, _present(wanted, paths), paths, cache=_job_cache(library, job_id), joins=joins)
    return _commit(library, job_id, chunk_id, edges, records, geometry, joins.skipped, len(wanted))


def _wanted(edges: list[Pair], records: list[list]) -> list[Pair]:
    """The chunk's pairs whose verdict geometry could change (marked so when planned)."""
    return [pair for pair, record in zip(edges, records) if record[3]]


def _present(pairs: list[Pair], paths: dict[int, str]) -> list[Pair]:
    """The pairs whose two pictures are still indexed (others were deleted since the plan)."""
    return [pair for pair in pairs if pair[0] in paths and pair[1] in paths]


_cache: dict = {}  # this process's keypoint cache, for the chunks of one scan job at a time


def _job_cache(library: Library, job_id: int) -> PictureCache:
    """The keypoints this process decoded for the job's earlier chunks (their pictures recur in
    later ones: a chunk holds a run of first pictures, their neighbours anywhere); a new job
    starts afresh, so features stored since are read."""
    key = (library.catalog.url, job_id)
    if _cache.get("key") != key:
        _cache.update(key=key, cache=picture_cache(library))
    _cache["cache"].catalog = library.catalog  # this task's connection (a worker opens one per task)
    return _cache["cache"]


def _job_joins(library: Library, job_id: int) -> NearJoins:
    """The near joins of the job's chunks committed so far, kept by this process across the job's
    chunks (each committed chunk read once), so it skips the pairs that earlier chunks joined,
    wherever they were verified."""
    key = (library.catalog.url, job_id)
    with library.catalog.session() as s:
        if _joins.get("key") != key:
            job = get_job(s, job_id)
            collection = s.get(Collection, job.collection_id)
            cal = calibration(library, (job.params or {}).get("threshold"))
            near_floor = (collection.review_thresholds or {}).get("near")
            _joins.update(key=key, joins=NearJoins(cal, {}, near_floor, apart_pairs(s, collection.id)), seen=set())
        joins, seen = _joins["joins"], _joins["seen"]
        done = set(s.scalars(select(JobChunk.id).where(JobChunk.job_id == job_id, JobChunk.status == "done"))) - seen
        for chunk_id, edges, records in s.execute(select(JobChunk.id, JobChunk.image_ids, JobChunk.results)
                                                  .where(JobChunk.id.in_(done))) if done else ():
            seen.add(chunk_id)
            joins.link_all([(a, b, PairEvidence(*record[:3], geometry=_geometry(record)))
                            for (a, b), record in zip(edges, records) if not _skipped(record)])
    return joins


_joins: dict = {}  # this process's near joins, for the chunks of one scan job at a time


def _evidence(record: list) -> PairEvidence:
    """An edge's cheap evidence as its chunk keeps it (``_record``)."""
    return PairEvidence(record[0], record[1], record[2])


def _geometry(record: list) -> Geometry | None:
    return Geometry(**record[4]) if record[4] else None


def _skipped(record: list) -> bool:
    """Whether the edge was left unverified as joined (chunks planned before skipping have no such field)."""
    return len(record) > 5 and bool(record[5])


def _paths(library: Library, image_ids: set[int]) -> dict[int, str]:
    with library.catalog.session() as s:
        return dict(s.execute(select(Image.id, Image.path).where(Image.id.in_(image_ids), Image.status == "indexed"))
                    .tuples().all()) if image_ids else {}


def _commit(library: Library, job_id: int, chunk_id: int, edges: list[Pair], records: list[list],
            geometry: dict[Pair, Geometry | None], skipped: set[Pair], wanted: int) -> bool:
    """The chunk done with its geometry (and its pairs skipped as joined) and its pairs counted, in
    one transaction, if still pending and the job still running (a cancelled scan keeps nothing more)."""
    found = [record[:4] + [_geometry_record(geometry.get(pair)), pair in skipped] for pair, record in zip(edges, records)]
    with library.catalog.session() as s:
        if s.scalar(select(Job.status).where(Job.id == job_id).with_for_update()) != "running":
            return False
        if s.execute(update(JobChunk).where(JobChunk.id == chunk_id, JobChunk.status == "pending").values(
                status="done", results=found, finished_at=utcnow())).rowcount != 1:
            s.rollback()
            return False
        s.execute(update(Job).where(Job.id == job_id).values(done=Job.done + wanted))
        return True


def _geometry_record(geometry: Geometry | None) -> dict | None:
    """Geometry as a chunk keeps it: every figure the verdict reads, unrounded (no transform)."""
    if geometry is None:
        return None
    return {k: v for k, v in asdict(geometry).items() if k != "transform"}


def finish_duplicates_job(library: Library, job_id: int, pool: GeometryPool | None = None) -> bool:
    """Judge every edge and save the groups once no chunk is pending (the cross pairs on ``pool``
    when given); True if this call closed the job. Two finishers at once (two last chunks) compute
    the same groups; one closes the job."""
    with library.catalog.session() as s:
        job = get_job(s, job_id)
        if job.status != "running" or not (job.params or {}).get("planned") or _pending(s, job_id):
            return False
        threshold = (job.params or {}).get("threshold")
        collection = s.get(Collection, job.collection_id)
        name = collection.name
        rows = s.execute(select(Image.id, Image.path, Image.sha256).where(
            Image.collection_id == collection.id, Image.status == "indexed").order_by(Image.id)).all()
        chunks = s.execute(select(JobChunk.image_ids, JobChunk.results).where(JobChunk.job_id == job_id)
                           .order_by(JobChunk.seq)).all()
        apart, thresholds = apart_pairs(s, collection.id), collection.review_thresholds or {}
    paths = {r.id: r.path for r in rows}
    plan = ScanPlan(paths, exact_groups(rows), [], calibration(library, threshold), apart, thresholds)
    geometry: dict[Pair, Geometry | None] = {}
    for edges, records in chunks:
        for (a, b), record in zip(edges, records):
            if a in paths and b in paths:
                plan.edges.append((a, b, _evidence(record)))
                geometry[(a, b)] = _geometry(record)
                if _skipped(record):
                    plan.skipped.add((a, b))
    save_groups(library, name, *last_stage(plan, geometry, pair_judge(library, name, plan.calibration, pool)), threshold)
    with library.catalog.session() as s:
        return s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(
            status="succeeded", finished_at=utcnow())).rowcount == 1


def run_duplicates_job(library: Library, job_id: int) -> None:
    """The whole scan in this process: plan, verify every pending chunk on every core, commit each,
    finish. Any error fails the job (chunks committed stay done) and is raised; a scan cancelled
    meanwhile saves no groups (JobCancelled)."""
    try:
        pending = plan_duplicates_job(library, job_id)
        with library.catalog.session() as s:
            chunks = [(c.id, [tuple(e) for e in c.image_ids], c.results)
                      for c in s.scalars(select(JobChunk).where(JobChunk.id.in_(pending)).order_by(JobChunk.seq))]
        wanted = {chunk_id: _wanted(edges, records) for chunk_id, edges, records in chunks}
        every = [pair for pairs in wanted.values() for pair in pairs]
        paths = _paths(library, {i for pair in every for i in pair})
        joins = _job_joins(library, job_id)
        joins.evidence = {pair: _evidence(record) for _, edges, records in chunks for pair, record in zip(edges, records)}
        with GeometryPool(library) as pool:
            geometry = verify_pairs(library, _present(every, paths), paths, joins=joins, pool=pool)
            for chunk_id, edges, records in chunks:
                _commit(library, job_id, chunk_id, edges, records, geometry, joins.skipped, len(wanted[chunk_id]))
            check_not_cancelled(library, job_id)
            finish_duplicates_job(library, job_id, pool)
    except BaseException as exc:
        fail_job(library, job_id, f"{type(exc).__name__}: {exc}")
        raise


DUPLICATES = JobKind("duplicates", "scanned for duplicates", run=run_duplicates_job,
                     pieces=JobPieces(plan=plan_duplicates_job, run=run_duplicates_chunk, finish=finish_duplicates_job))
