"""The archive format of ``dinoseek backup`` / ``export``: catalog rows and vectors, portable.

An archive is a directory, or the same directory packed in one uncompressed ``.tar`` file
(vectors do not compress): ::

    manifest.json                       format, kind, versions, models, row and vector counts, sha256 of every file
    catalog/<table>.jsonl               one JSON object per row, every column (see ``encode_value``)
    vectors/<collection>/global.ids.npy        int64 ids, ascending
    vectors/<collection>/global.vectors.npy    (n, dim) float32
    vectors/<collection>/patches.ids.npy       int64 patch point ids (image id * 64 + cell)
    vectors/<collection>/patches.vectors.npy   (n, dim) float16 (what the patch stores hold)

Rows are written through SQLAlchemy with column-type-directed encodings that any catalog
database reads back (datetimes as ISO 8601 in UTC, JSON columns as JSON, bytes as base64), so an
archive taken on SQLite restores into PostgreSQL and back. Vectors are ``.npy`` files read and
written in batches, so neither side holds a whole store in memory, and they go into any backend.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
from sqlalchemy import JSON, DateTime, LargeBinary, Table, bindparam

from indexer.durable import replace_durably, sync_file, sync_folder
from indexer.errors import IndexerError, InvalidRequest

FORMAT = "dinoseek-archive/1"
MANIFEST = "manifest.json"
READ_BLOCK = 1 << 20


class ArchiveError(InvalidRequest):
    """An archive that cannot be used: missing, not an archive, corrupt, or from another schema version."""


class TargetNotEmpty(IndexerError):
    """A restore or import would overwrite something: a non-empty catalog, an existing collection, a store that holds vectors."""


# ---------------------------------------------------------------------------------------- row encoding
def encode_value(column_type: Any, value: Any) -> Any:
    """A column value as JSON: datetimes → ISO 8601 in UTC (naive ones, as SQLite returns them, are
    UTC: dinoseek writes UTC), bytes → base64, JSON columns as they are, the rest as is."""
    if value is None:
        return None
    if isinstance(column_type, DateTime):
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.isoformat()
    if isinstance(column_type, LargeBinary):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def decode_value(column: Any, value: Any) -> Any:
    """The inverse of ``encode_value`` for a column of the target table."""
    column_type = column.type
    if value is None:
        return None
    if isinstance(column_type, DateTime):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)
    if isinstance(column_type, LargeBinary):
        return base64.b64decode(value)
    return value


def encode_row(table: Table, row: Any) -> dict:
    mapping = row._mapping
    return {c.name: encode_value(c.type, mapping[c.name]) for c in table.columns}


def decode_row(table: Table, row: dict, where: str) -> dict:
    unknown = set(row) - set(table.columns.keys())
    if unknown:
        raise ArchiveError(f"{where}: columns {', '.join(sorted(unknown))} are not in table {table.name}")
    return {name: decode_value(table.columns[name], value) for name, value in row.items()}


def insert_statement(table: Table, columns: list[str]):
    """An INSERT of ``columns`` for executemany with plain dicts keyed by column name; None in a
    nullable JSON column becomes SQL NULL (as an unset value would), not the JSON text 'null'."""
    values = {}
    for name in columns:
        column = table.columns[name]
        kind = JSON(none_as_null=True) if isinstance(column.type, JSON) and column.nullable else column.type
        values[name] = bindparam(f"v_{name}", type_=kind)
    return table.insert().values(values)


def insert_params(rows: list[dict]) -> list[dict]:
    return [{f"v_{k}": v for k, v in row.items()} for row in rows]


# ---------------------------------------------------------------------------------------- writing
def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(READ_BLOCK):
            digest.update(block)
    return digest.hexdigest()


class NpyWriter:
    """An ``.npy`` file of a known shape, filled a batch of rows at a time."""

    def __init__(self, path: Path, dtype: str, rows: int, dim: int | None = None) -> None:
        self.path, self.dtype, self.rows = path, np.dtype(dtype), rows
        self.shape = (rows,) if dim is None else (rows, dim)
        self.written = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._fh, header)

    def write(self, batch: np.ndarray) -> None:
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        if batch.shape[1:] != self.shape[1:] or self.written + len(batch) > self.rows:
            raise ArchiveError(f"{self.path.name}: got a batch of shape {batch.shape} after {self.written} of "
                               f"{self.rows} rows of shape {self.shape[1:]}")
        self._fh.write(batch.tobytes())
        self.written += len(batch)

    def close(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()


class ArchiveWriter:
    """Builds an archive in a staging directory next to ``out``; ``commit`` writes the manifest
    (with every file's sha256) and moves it into place (packing it first when ``out`` ends in .tar)."""

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out).absolute()
        if self.out.exists() or self.out.is_symlink():
            raise InvalidRequest(f"{self.out} already exists; choose a new name for the archive")
        if not self.out.parent.is_dir():
            raise InvalidRequest(f"cannot write {self.out}: folder {self.out.parent} does not exist")
        self.packed = self.out.suffix == ".tar"
        self.stage = self.out.with_name(f".{self.out.name}.partial-{os.getpid()}")
        shutil.rmtree(self.stage, ignore_errors=True)
        self.stage.mkdir()
        self.tables: dict[str, dict] = {}

    def table_file(self, table: str) -> tuple[str, IO[str]]:
        rel = f"catalog/{table}.jsonl"
        path = self.stage / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return rel, open(path, "w", encoding="utf-8")

    def write_rows(self, table: Table, rows: Iterator[Any]) -> int:
        """Every row of ``rows`` (SQLAlchemy result rows of ``table``) as one JSON line; returns the count."""
        rel, fh = self.table_file(table.name)
        count = 0
        with fh:
            for row in rows:
                fh.write(json.dumps(encode_row(table, row), ensure_ascii=False, allow_nan=True, separators=(",", ":")))
                fh.write("\n")
                count += 1
        self.tables[table.name] = {"file": rel, "rows": count}
        return count

    def npy(self, rel: str, dtype: str, rows: int, dim: int | None = None) -> NpyWriter:
        return NpyWriter(self.stage / rel, dtype, rows, dim)

    def commit(self, manifest: dict) -> Path:
        """Write the manifest and put the archive in place, every file and folder flushed to disk
        first: an archive that exists is whole."""
        files = {}
        for path in sorted(p for p in self.stage.rglob("*") if p.is_file()):
            rel = path.relative_to(self.stage).as_posix()
            files[rel] = {"sha256": _sha256_file(path), "bytes": path.stat().st_size}
            sync_file(path)
        doc = dict(manifest, format=FORMAT, tables=self.tables, files=files)
        with open(self.stage / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self.packed:
            partial = self.out.with_name(f".{self.out.name}.partial-{os.getpid()}.tar")
            with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
                for path in [self.stage / MANIFEST] + [self.stage / rel for rel in files]:
                    tar.add(path, arcname=path.relative_to(self.stage).as_posix(), recursive=False)
            replace_durably(partial, self.out)
            shutil.rmtree(self.stage, ignore_errors=True)
        else:
            for folder in sorted({p.parent for p in self.stage.rglob("*")} | {self.stage}):
                sync_folder(folder)
            os.replace(self.stage, self.out)
            sync_folder(self.out.parent)
        return self.out

    def abandon(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
        partial = self.out.with_name(f".{self.out.name}.partial-{os.getpid()}.tar")
        partial.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- reading
class Archive:
    """An archive opened for reading (a directory or a .tar), its manifest parsed and checked."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path).absolute()
        self._tar: tarfile.TarFile | None = None
        if not self.path.exists():
            raise ArchiveError(f"{self.path} does not exist")
        if self.path.is_dir():
            if not (self.path / MANIFEST).is_file():
                raise ArchiveError(f"{self.path} is not a dinoseek archive: it has no {MANIFEST}")
        else:
            try:
                self._tar = tarfile.open(self.path, "r:")
                self._members = {m.name.removeprefix("./"): m for m in self._tar.getmembers() if m.isfile()}
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise ArchiveError(f"{self.path} is not a dinoseek archive (a directory or a .tar file): {exc}") from exc
            if MANIFEST not in self._members:
                raise ArchiveError(f"{self.path} is not a dinoseek archive: it has no {MANIFEST}")
        try:
            with self.open(MANIFEST) as fh:
                self.manifest = json.load(fh)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"{self.path}: {MANIFEST} is not valid JSON ({exc}): the archive is corrupt") from exc
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            found = self.manifest.get("format") if isinstance(self.manifest, dict) else None
            raise ArchiveError(f"{self.path}: archive format {found!r} is not {FORMAT!r}, which this dinoseek reads")
        for key in ("kind", "alembic_revision", "dinoseek_version", "tables", "files", "stores"):
            if key not in self.manifest:
                raise ArchiveError(f"{self.path}: {MANIFEST} lacks {key!r}: the archive is corrupt")

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    def _checked_name(self, rel: str) -> str:
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts or not rel:
            raise ArchiveError(f"{self.path}: {MANIFEST} names a file outside the archive ({rel!r})")
        return pure.as_posix()

    def open(self, rel: str) -> IO[bytes]:
        rel = self._checked_name(rel)
        if self._tar is None:
            try:
                return open(self.path / rel, "rb")
            except FileNotFoundError:
                raise ArchiveError(f"{self.path}: {rel} is missing: the archive is incomplete") from None
        member = self._members.get(rel)
        if member is None:
            raise ArchiveError(f"{self.path}: {rel} is missing: the archive is incomplete")
        handle = self._tar.extractfile(member)
        assert handle is not None
        return handle

    def verify(self) -> None:
        """Every file the manifest lists has its recorded size and sha256; every file the manifest
        refers to is listed. Raises ``ArchiveError`` naming the first file that is not right."""
        files = self.manifest["files"]
        referred = [t["file"] for t in self.manifest["tables"].values()]
        referred += [s[k] for s in self.manifest["stores"] for k in ("ids", "vectors")]
        unlisted = [rel for rel in referred if rel not in files]
        if unlisted:
            raise ArchiveError(f"{self.path}: {unlisted[0]} has no checksum in {MANIFEST}: the archive is corrupt")
        for rel, expected in sorted(files.items()):
            digest, size = hashlib.sha256(), 0
            with self.open(rel) as fh:
                while block := fh.read(READ_BLOCK):
                    digest.update(block)
                    size += len(block)
            if digest.hexdigest() != expected.get("sha256") or size != expected.get("bytes"):
                raise ArchiveError(f"{self.path}: {rel} does not match its checksum in {MANIFEST} "
                                   f"(sha256 {digest.hexdigest()[:16]}…, {size} bytes; recorded "
                                   f"{str(expected.get('sha256'))[:16]}…, {expected.get('bytes')} bytes): "
                                   "the archive is corrupt or was modified")

    def rows(self, table: str) -> Iterator[tuple[dict, str]]:
        """The archived rows of ``table`` as JSON objects (with ``file:line`` for error messages)."""
        entry = self.manifest["tables"].get(table)
        if entry is None:
            return
        with self.open(entry["file"]) as raw, io.TextIOWrapper(raw, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                where = f"{self.path}: {entry['file']}:{number}"
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    raise ArchiveError(f"{where} is not a JSON row ({exc})") from exc
                if not isinstance(row, dict):
                    raise ArchiveError(f"{where} is not a JSON object")
                yield row, where

    def vectors(self, store: dict, batch_size: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The (ids, float32 vectors) of an archived store, ``batch_size`` rows at a time."""
        with self.open(store["ids"]) as ids_fh, self.open(store["vectors"]) as vec_fh:
            id_dtype, id_shape = _npy_header(ids_fh, self.path, store["ids"])
            vec_dtype, vec_shape = _npy_header(vec_fh, self.path, store["vectors"])
            rows = int(store["count"])
            if id_shape != (rows,) or vec_shape != (rows, int(store["dim"])):
                raise ArchiveError(f"{self.path}: {store['vectors']} holds shape {vec_shape} with ids {id_shape}, "
                                   f"the manifest says {rows} vectors of {store['dim']} dimensions")
            for start in range(0, rows, batch_size):
                n = min(batch_size, rows - start)
                ids = np.frombuffer(_read_exactly(ids_fh, n * id_dtype.itemsize, self.path, store["ids"]),
                                    dtype=id_dtype).astype(np.int64)
                raw = _read_exactly(vec_fh, n * vec_shape[1] * vec_dtype.itemsize, self.path, store["vectors"])
                yield ids, np.frombuffer(raw, dtype=vec_dtype).reshape(n, vec_shape[1]).astype(np.float32)


def _npy_header(fh: IO[bytes], archive: Path, rel: str) -> tuple[np.dtype, tuple[int, ...]]:
    try:
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read_header(fh)
    except ValueError as exc:
        raise ArchiveError(f"{archive}: {rel} is not a .npy array ({exc})") from exc
    if fortran or dtype.hasobject:
        raise ArchiveError(f"{archive}: {rel} is not a plain C-ordered numeric array")
    return dtype, tuple(shape)


def _read_exactly(fh: IO[bytes], size: int, archive: Path, rel: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise ArchiveError(f"{archive}: {rel} ends early: the archive is corrupt")
    return data
