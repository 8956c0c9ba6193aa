"""Application settings: ``DINOSEEK_*`` environment variables over an optional TOML file.

Read once into one immutable object; ``indexer``, ``workers`` and ``api`` take it as an argument.
``model`` never imports this module.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import unquote, urlsplit

VECTOR_BACKENDS = ("auto", "faiss", "qdrant")  # auto: FAISS when installed, else Qdrant
_DEVICES = ("auto", "cpu", "cuda")  # and cuda:N, one GPU of several
QDRANT_QUANTIZATIONS = ("int8", "none")
QDRANT_PATCH_LAYOUTS = ("points", "multivector")
MIN_SECRET_LENGTH = 16
PLACEHOLDER_PREFIX = "change-me"  # every secret .env.example ships begins so
MAKE_A_SECRET = "make one with `openssl rand -hex 24`"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class SettingsError(ValueError):
    """A setting has a value dinoseek cannot use; the message names the setting."""


def redacted_url(url: str | None) -> str | None:
    """The URL with its password, if any, shown as ``***`` (for messages, logs and reprs)."""
    if not url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, host = parts.netloc.rsplit("@", 1)
    return parts._replace(netloc=f"{user_info.split(':', 1)[0]}:***@{host}").geturl()


@dataclass(frozen=True)
class Settings:
    """Every knob the services read. Field ``x`` comes from ``DINOSEEK_X`` or key ``x`` in TOML."""

    home: Path
    database_url: str
    vector_backend: str = "auto"
    qdrant_url: str | None = None
    broker_url: str | None = None
    model: str | None = None
    device: str = "auto"
    api_keys: tuple[str, ...] = ()
    allowed_roots: tuple[Path, ...] = ()
    max_image_pixels: int = 100_000_000
    chunk_size: int = 512
    scan_pairs_per_chunk: int = 512  # pairs a duplicate scan's chunk verifies (a worker's task)
    visibility_timeout: int = 600
    max_chunk_starts: int = 3  # a chunk started this often without finishing fails its files instead of a 4th start
    task_time_limit: int = 1800  # seconds a worker task may run before its process is killed (and the chunk redelivered)
    expensive_reads: int = 4  # searches, region queries, duplicate checks running at once per route and API process
    max_upload_mb: int = 256
    max_file_mb: int = 512  # the largest image file read from disk (larger ones fail with the reason)
    decode_memory_mb: int = 2048  # memory this process's decodes may hold at once (model/decode_memory.py)
    query_embedding: str = "api"  # where the API embeds query pictures: "api" (its own process) or "gpu" (a worker)
    # The Qdrant server (DINOSEEK_QDRANT_URL): its API key, and how dinoseek creates collections there.
    qdrant_api_key: str | None = field(default=None, repr=False)  # a secret: kept out of logs
    qdrant_hnsw_m: int = 16  # HNSW graph degree (0: no graph, every search scans)
    qdrant_hnsw_ef_construct: int = 100  # HNSW build-time beam width
    qdrant_quantization: str = "int8"  # "int8": scalar int8 copy kept in RAM, searches rescore; "none"
    qdrant_on_disk: bool = False  # original vectors on disk (memory-mapped), only the int8 copy in RAM
    qdrant_patch_layout: str = "points"  # "points": one point per patch cell; "multivector": one per image (MAX_SIM)
    qdrant_ca_file: str | None = None  # PEM CA the https:// Qdrant server's certificate must chain to (only it is trusted)
    # Signs the web app's session cookies; unset: a random one kept in DINOSEEK_HOME/session_secret (api/session.py).
    session_secret: str | None = field(default=None, repr=False)  # a secret: kept out of logs

    def __repr__(self) -> str:
        """Every setting but the secrets: keys counted, URLs with their passwords masked, the
        Qdrant key left out (a logged or printed Settings must not hand them out)."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "api_keys":
                value = f"<{len(value)} keys>"
            elif f.name in ("database_url", "broker_url", "qdrant_url"):
                value = redacted_url(value)
            elif not f.repr:
                continue
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def models_dir(self) -> Path:
        """Where bare model names (e.g. ``dinov2_vits14_reg4``) are looked up."""
        return self.home / "models"


def _split(value: str, sep: str) -> list[str]:
    return [part.strip() for part in value.split(sep) if part.strip()]


def load_settings(env: Mapping[str, str] | None = None, config_file: str | os.PathLike | None = None) -> Settings:
    """Merge the TOML file (``config_file`` or ``DINOSEEK_CONFIG``) with the environment, env winning."""
    env = os.environ if env is None else env
    raw: dict[str, object] = {}
    path = config_file or env.get("DINOSEEK_CONFIG")
    if path:
        try:
            raw.update(tomllib.loads(Path(path).expanduser().read_text()))
        except OSError as exc:
            raise SettingsError(f"DINOSEEK_CONFIG: cannot read {path} ({exc.strerror})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"DINOSEEK_CONFIG: {path} is not valid TOML ({exc})") from exc
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(f"{path}: unknown settings {', '.join(unknown)}")
    for name in known:
        value = env.get(f"DINOSEEK_{name.upper()}")
        if value is not None and value != "":
            raw[name] = value

    home = Path(str(raw.get("home", "~/.dinoseek"))).expanduser()
    backend = str(raw.get("vector_backend", "auto")).lower()
    if backend not in VECTOR_BACKENDS:
        raise SettingsError(f"DINOSEEK_VECTOR_BACKEND must be one of {', '.join(VECTOR_BACKENDS)}, got {backend!r}")
    device = parse_device(raw.get("device", "auto"))
    keys = raw.get("api_keys", ())
    keys = _split(keys, ",") if isinstance(keys, str) else [str(k) for k in keys]
    bad = [k for k in keys if ":" in k and k.rsplit(":", 1)[1] != "ro"]
    if bad:
        raise SettingsError(f"DINOSEEK_API_KEYS: entries must be KEY or KEY:ro, got {', '.join(bad)}")
    roots = raw.get("allowed_roots", ())
    roots = _split(roots, ":") if isinstance(roots, str) else [str(r) for r in roots]
    max_pixels = _positive_int(raw, "max_image_pixels", 100_000_000)
    query_embedding = str(raw.get("query_embedding", "api")).lower()
    if query_embedding not in ("api", "gpu"):
        raise SettingsError(f"DINOSEEK_QUERY_EMBEDDING must be api or gpu, got {query_embedding!r}")
    if query_embedding == "gpu" and not raw.get("broker_url"):
        raise SettingsError("DINOSEEK_QUERY_EMBEDDING=gpu needs DINOSEEK_BROKER_URL (queries go to the gpu queue)")
    quantization = str(raw.get("qdrant_quantization", "int8")).lower()
    if quantization not in QDRANT_QUANTIZATIONS:
        raise SettingsError(f"DINOSEEK_QDRANT_QUANTIZATION must be one of {', '.join(QDRANT_QUANTIZATIONS)}, "
                            f"got {quantization!r}")
    patch_layout = str(raw.get("qdrant_patch_layout", "points")).lower()
    if patch_layout not in QDRANT_PATCH_LAYOUTS:
        raise SettingsError(f"DINOSEEK_QDRANT_PATCH_LAYOUT must be one of {', '.join(QDRANT_PATCH_LAYOUTS)}, "
                            f"got {patch_layout!r}")
    if patch_layout == "multivector" and (backend != "qdrant" or not raw.get("qdrant_url")):
        raise SettingsError("DINOSEEK_QDRANT_PATCH_LAYOUT=multivector needs a Qdrant server "
                            "(DINOSEEK_VECTOR_BACKEND=qdrant and DINOSEEK_QDRANT_URL): FAISS and Qdrant Edge "
                            "keep patch cells as points")
    ca_file = str(Path(str(raw["qdrant_ca_file"])).expanduser()) if raw.get("qdrant_ca_file") else None
    if ca_file and urlsplit(str(raw.get("qdrant_url") or "")).scheme != "https":
        raise SettingsError("DINOSEEK_QDRANT_CA_FILE needs an https:// DINOSEEK_QDRANT_URL (the CA verifies the "
                            f"server's certificate), got {redacted_url(str(raw.get('qdrant_url') or '')) or 'none'}")
    return Settings(
        home=home,
        database_url=str(raw.get("database_url") or f"sqlite:///{home / 'dinoseek.db'}"),
        vector_backend=backend,
        qdrant_url=str(raw["qdrant_url"]) if raw.get("qdrant_url") else None,
        broker_url=str(raw["broker_url"]) if raw.get("broker_url") else None,
        model=str(raw["model"]) if raw.get("model") else None,
        device=device,
        api_keys=tuple(keys),
        allowed_roots=tuple(Path(r).expanduser().resolve() for r in roots),
        max_image_pixels=max_pixels,
        chunk_size=_positive_int(raw, "chunk_size", 512),
        scan_pairs_per_chunk=_positive_int(raw, "scan_pairs_per_chunk", 512),
        visibility_timeout=_positive_int(raw, "visibility_timeout", 600),
        max_chunk_starts=_positive_int(raw, "max_chunk_starts", 3),
        task_time_limit=_positive_int(raw, "task_time_limit", 1800),
        expensive_reads=_positive_int(raw, "expensive_reads", 4),
        max_upload_mb=_positive_int(raw, "max_upload_mb", 256),
        max_file_mb=_positive_int(raw, "max_file_mb", 512),
        decode_memory_mb=_positive_int(raw, "decode_memory_mb", 2048),
        query_embedding=query_embedding,
        qdrant_api_key=str(raw["qdrant_api_key"]) if raw.get("qdrant_api_key") else None,
        qdrant_hnsw_m=_int_at_least(raw, "qdrant_hnsw_m", 16, 0),
        # Qdrant refuses ef_construct below 4
        qdrant_hnsw_ef_construct=_int_at_least(raw, "qdrant_hnsw_ef_construct", 100, 4),
        qdrant_quantization=quantization,
        qdrant_on_disk=_bool(raw, "qdrant_on_disk", False),
        qdrant_patch_layout=patch_layout,
        qdrant_ca_file=ca_file,
        session_secret=str(raw["session_secret"]) if raw.get("session_secret") else None,
    )


def parse_device(value: object) -> str:
    """``auto``, ``cpu``, ``cuda`` (the first visible GPU) or ``cuda:N`` (GPU N), as torch spells it."""
    device = str(value).strip().lower()
    if device in _DEVICES:
        return device
    kind, sep, index = device.partition(":")
    if kind == "cuda" and sep:
        if not (index.isascii() and index.isdigit()):  # digits only: no sign, no spaces
            raise SettingsError(f"DINOSEEK_DEVICE: cuda:N needs a GPU number N >= 0, got {value!r}")
        return f"cuda:{int(index)}"
    raise SettingsError(f"DINOSEEK_DEVICE must be one of {', '.join(_DEVICES)} or cuda:N, got {value!r}")


def _positive_int(raw: Mapping[str, object], name: str, default: int) -> int:
    number = _int(raw, name, default)
    if number <= 0:
        raise SettingsError(f"DINOSEEK_{name.upper()} must be positive, got {number}")
    return number


def _int_at_least(raw: Mapping[str, object], name: str, default: int, minimum: int) -> int:
    number = _int(raw, name, default)
    if number < minimum:
        raise SettingsError(f"DINOSEEK_{name.upper()} must be at least {minimum}, got {number}")
    return number


def _int(raw: Mapping[str, object], name: str, default: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or isinstance(value, float):  # TOML true / 1.5 are not counts
        raise SettingsError(f"DINOSEEK_{name.upper()} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"DINOSEEK_{name.upper()} must be an integer, got {value!r}") from exc


def _bool(raw: Mapping[str, object], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SettingsError(f"DINOSEEK_{name.upper()} must be true or false (1/0, yes/no, on/off), got {value!r}")


def secret_problems(settings: Settings) -> list[str]:
    """What is wrong with the secrets the settings hold (API keys, the Qdrant key, the database's
    and the broker's passwords): placeholders (``change-me…``, as .env.example ships them) and
    ones shorter than MIN_SECRET_LENGTH. Each problem names the setting, never the secret."""
    found: list[tuple[str, str]] = [(f"DINOSEEK_API_KEYS entry {n}", entry.removesuffix(":ro"))
                                    for n, entry in enumerate(settings.api_keys, 1)]
    if settings.qdrant_api_key:
        found.append(("DINOSEEK_QDRANT_API_KEY", settings.qdrant_api_key))
    if settings.session_secret:
        found.append(("DINOSEEK_SESSION_SECRET", settings.session_secret))
    for name, url in (("DINOSEEK_DATABASE_URL", settings.database_url), ("DINOSEEK_BROKER_URL", settings.broker_url)):
        password = urlsplit(url).password if url else None
        if password:
            found.append((f"the password in {name}", unquote(password)))
    problems = []
    for name, secret in found:
        if secret.lower().startswith(PLACEHOLDER_PREFIX):
            problems.append(f"{name} is a placeholder from .env.example")
        elif len(secret) < MIN_SECRET_LENGTH:
            problems.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
    return problems


def check_secrets(settings: Settings) -> None:
    """Refuse (SettingsError) settings whose secrets are placeholders or short: a server started
    from the published example must not answer with a key printed in the repository."""
    problems = secret_problems(settings)
    if problems:
        raise SettingsError(f"refusing to start: {'; '.join(problems)}; {MAKE_A_SECRET} for each (docs/DEPLOY.md)")
