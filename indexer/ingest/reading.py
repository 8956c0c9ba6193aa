"""Read one image file completely: its bytes' SHA-256, its metadata, and its pixels as RGB.

The file is read once; hashing, probing and decoding work on those bytes. Every way a file can be
bad (unreadable, empty, not a regular file, too large, not an image, truncated, too many pixels)
raises ``ImageDecodeError`` with the path and the reason, so the caller fails that file alone. A
file is opened without blocking (a FIFO named ``a.jpg`` is refused, not waited on) and read only
if it is a regular file within the size limit.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat as file_types
from dataclasses import dataclass
from datetime import datetime, timezone

from PIL import ExifTags, Image

from model.decode_memory import MB, DecodeBudget
from model.preprocess import ImageDecodeError, decode_errors, finish_decode, open_image

DEFAULT_MAX_PIXELS = 100_000_000  # a 10k x 10k photo; larger files are refused as decompression bombs
DEFAULT_MAX_FILE_MB = 512  # DINOSEEK_MAX_FILE_MB: the largest file read (a RAW or a TIFF panorama fits)
_EXIF_DATETIME = ExifTags.Base.DateTimeOriginal
_plugins_enabled: list[str] | None = None  # what the first call found


def register_optional_plugins() -> list[str]:
    """Enable HEIC/AVIF decoding when ``pillow-heif`` is installed; returns the plugins enabled.
    Looked for once a process: every decode calls this, and an import that fails searches the
    whole path again each time it is tried."""
    global _plugins_enabled
    if _plugins_enabled is not None:
        return list(_plugins_enabled)
    enabled: list[str] = []
    try:
        import pillow_heif  # lazy: an optional package

        pillow_heif.register_heif_opener()
        if hasattr(pillow_heif, "register_avif_opener"):
            pillow_heif.register_avif_opener()
        enabled.append("pillow_heif")
    except ImportError:
        pass
    _plugins_enabled = enabled
    return list(enabled)


@dataclass(frozen=True)
class ImageInfo:
    """What the catalog records about a file's picture (width/height after EXIF orientation)."""

    format: str
    width: int
    height: int
    orientation: int | None
    taken_at: datetime | None
    camera: str | None


@dataclass(frozen=True)
class FileStat:
    size_bytes: int
    mtime_ns: int


@dataclass
class LoadedImage:
    path: str
    sha256: str
    stat: FileStat
    info: ImageInfo
    image: Image.Image  # RGB, oriented, possibly reduced by JPEG draft decoding


def stat_file(path: str | os.PathLike) -> FileStat:
    st = os.stat(path)
    return FileStat(st.st_size, st.st_mtime_ns)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _exif_fields(img: Image.Image) -> tuple[int | None, datetime | None, str | None]:
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not fail a decodable picture
        return None, None, None
    orientation = exif.get(ExifTags.Base.Orientation)
    camera = " ".join(str(exif.get(tag, "")).strip("\x00 ") for tag in (ExifTags.Base.Make, ExifTags.Base.Model)).strip()
    taken = None
    try:
        raw = exif.get_ifd(ExifTags.IFD.Exif).get(_EXIF_DATETIME) or exif.get(ExifTags.Base.DateTime)
        if raw:
            taken = datetime.strptime(str(raw).strip("\x00 "), "%Y:%m:%d %H:%M:%S").replace(tzinfo=timezone.utc)
    except (ValueError, KeyError, TypeError):
        taken = None
    return (int(orientation) if isinstance(orientation, int) and 1 <= orientation <= 8 else None,
            taken, camera[:128] or None)


DEFAULT_DECODE_MEMORY_MB = 2048  # DINOSEEK_DECODE_MEMORY_MB
# every decode of this process (indexing threads, API requests, a worker's tasks) draws from it
DECODE_BUDGET = DecodeBudget(DEFAULT_DECODE_MEMORY_MB * MB)


def set_decode_memory(mb: int) -> None:
    """Size this process's decode budget (the library does, from DINOSEEK_DECODE_MEMORY_MB)."""
    DECODE_BUDGET.resize(mb * MB)


def read_bytes(path: str | os.PathLike, max_mb: int = DEFAULT_MAX_FILE_MB,
               nofollow: bool = False) -> tuple[bytes, FileStat]:
    """The file's bytes and the size/mtime they were read at. Unreadable, empty, non-regular
    (FIFO, device, socket, folder) and files over ``max_mb`` raise, before any byte is read; with
    ``nofollow``, so does a symlink."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0))
    except OSError as exc:
        if nofollow and exc.errno == errno.ELOOP:
            raise ImageDecodeError(f"{name}: is a symbolic link now; not followed") from exc
        raise ImageDecodeError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    try:
        st = os.fstat(fd)
        if not file_types.S_ISREG(st.st_mode):
            raise ImageDecodeError(f"{name}: not a regular file ({_file_type(st.st_mode)}); skipped")
        if st.st_size > max_mb * MB:
            raise ImageDecodeError(f"{name}: file is {st.st_size / MB:.0f} MB, over the {max_mb} MB limit "
                                   "(DINOSEEK_MAX_FILE_MB)")
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(max_mb * MB + 1)  # a file growing while read stops at the limit
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if len(data) > max_mb * MB:
        raise ImageDecodeError(f"{name}: file grew over the {max_mb} MB limit while read (DINOSEEK_MAX_FILE_MB)")
    if not data:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    return data, FileStat(st.st_size, st.st_mtime_ns)


def _file_type(mode: int) -> str:
    for test, what in ((file_types.S_ISFIFO, "a FIFO"), (file_types.S_ISCHR, "a character device"),
                       (file_types.S_ISBLK, "a block device"), (file_types.S_ISSOCK, "a socket"),
                       (file_types.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "not a plain file"


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               target_long_side: int | None = None, max_mb: int = DEFAULT_MAX_FILE_MB,
               nofollow: bool = False) -> LoadedImage:
    """Hash, probe and decode ``path``. ``target_long_side`` lets JPEGs decode at a reduced scale
    (never below it); metadata always describes the full-size picture."""
    data, stat = read_bytes(path, max_mb, nofollow)
    return decode_bytes(str(path), data, stat, max_pixels, target_long_side)


def decode_bytes(name: str, data: bytes, stat: FileStat, max_pixels: int = DEFAULT_MAX_PIXELS,
                 target_long_side: int | None = None, sha256: str | None = None) -> LoadedImage:
    """Probe and decode bytes already read from ``name`` (see ``read_image``); ``sha256``, the
    bytes' hash when the caller has it already (a camera photo's takes milliseconds)."""
    register_optional_plugins()
    with decode_errors(name):
        img = open_image(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise ImageDecodeError(f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of "
                                   f"{max_pixels:,} (possible decompression bomb; raise DINOSEEK_MAX_IMAGE_PIXELS)")
        fmt = img.format or "UNKNOWN"
        orientation, taken_at, camera = _exif_fields(img)
        img = finish_decode(img, target_long_side, DECODE_BUDGET)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    info = ImageInfo(fmt, width, height, orientation, taken_at, camera)
    return LoadedImage(name, sha256 or sha256_bytes(data), stat, info, img)
