"""What an archive's rows must be before they enter a catalog (``restore`` and ``import``): an
archive is a file anyone may have edited, so collection names, image and index paths and job
statuses are checked as a request's would be, and a job the archive caught queued or running is
recorded as interrupted rather than left to block its collection forever."""

from __future__ import annotations

from pathlib import PurePosixPath

from indexer.archive.format import ArchiveError
from indexer.catalog.models import ACTIVE_JOB_STATUSES, JOB_STATUSES
from indexer.catalog.names import check_collection_name
from indexer.errors import InvalidRequest

INTERRUPTED = "interrupted: the archive was written while this job was {status}; run it again"


def _check_path(value, where: str, what: str) -> None:
    if not isinstance(value, str) or not value or "\x00" in value:
        raise ArchiveError(f"{where}: {what} {value!r} is not a path")
    path = PurePosixPath(value)
    if not path.is_absolute() or ".." in path.parts:
        raise ArchiveError(f"{where}: {what} {value!r} is not an absolute path without '..'")


def checked_row(table: str, row: dict, where: str) -> dict:
    """The row as it may enter the catalog, or ArchiveError naming where it is and what is wrong."""
    if table == "collections":
        try:
            check_collection_name(row.get("name"))
        except InvalidRequest as exc:
            raise ArchiveError(f"{where}: {exc}") from exc
        if "vector_backend" in row:  # the vectors go into this library's stores, of the kind it serves
            row = dict(row, vector_backend=None)
    elif table == "images":
        _check_path(row.get("path"), where, "image path")
    elif table == "jobs":
        if row.get("status") not in JOB_STATUSES:
            raise ArchiveError(f"{where}: job status {row.get('status')!r} is not one of {', '.join(JOB_STATUSES)}")
        for path in (row.get("params") or {}).get("paths", []):
            _check_path(path, where, "indexed path")
        if row["status"] in ACTIVE_JOB_STATUSES:
            row = dict(row, message=INTERRUPTED.format(status=row["status"]), status="failed",
                       finished_at=row.get("finished_at") or row.get("created_at"))
    return row
