"""Checkpoint files: load any supported backbone file strictly, save our own format atomically.

Supported inputs: Meta's released DINOv2 ``.pth`` files (any size, with or without registers),
Meta's training checkpoints (block-chunked, teacher/student wrapped), Hugging Face
``Dinov2Model`` / ``Dinov2WithRegistersModel`` weights (a ``save_pretrained`` directory, a
``.safetensors`` file or a state-dict file) and dinoseek's own ``dinoseek-vit/1`` files.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from model.arch import ViTArch
from model.convert import StateDict, infer_arch, to_meta_layout
from model.vision_transformer import DinoVisionTransformer

FORMAT = "dinoseek-vit/1"
_WEIGHTS_DIR = SHIPPED_WEIGHTS_DIR = Path(__file__).with_name("weights")  # the checkpoints the package ships
DEFAULT_CHECKPOINT = _WEIGHTS_DIR / "default.pt"
_NAME_PATTERNS = ("{}", "{}.pt", "{}.pth", "{}_pretrain.pth", "{}.safetensors", "dinov2_{}_pretrain.pth")


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or does not fit a DINOv2 backbone."""


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes: the identity an index records for the model it was built with."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_checkpoint(path_or_name: str | os.PathLike | None, search_dirs: list[Path] | None = None) -> Path:
    """A path as given, a bare name looked up in ``search_dirs``, or the shipped default for None."""
    if path_or_name is None:
        if DEFAULT_CHECKPOINT.is_file():
            return DEFAULT_CHECKPOINT
        raise CheckpointError(
            f"no default model is installed at {DEFAULT_CHECKPOINT}; pass a checkpoint path "
            "(Meta's DINOv2 .pth, a Hugging Face directory or a dinoseek checkpoint)"
        )
    path = Path(path_or_name).expanduser()
    if path.exists():
        return path
    name = str(path_or_name)
    tried = []
    if os.sep not in name:
        for folder in [*(search_dirs or []), _WEIGHTS_DIR]:
            for pattern in _NAME_PATTERNS:
                candidate = Path(folder).expanduser() / pattern.format(name)
                tried.append(str(candidate))
                if candidate.is_file():
                    return candidate
    where = f" (also looked for {', '.join(tried)})" if tried else ""
    raise CheckpointError(f"checkpoint {name!r} not found{where}; nothing is downloaded at run time")


def _read_object(path: Path) -> tuple[Any, dict[str, Any], Path]:
    """Load a file's contents (weights-only), any Hugging Face config next to it, and the file read."""
    config: dict[str, Any] = {}
    if path.is_dir():
        if (path / "config.json").is_file():
            config = json.loads((path / "config.json").read_text())
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise CheckpointError(f"{path}: directory holds neither model.safetensors nor pytorch_model.bin")
    elif (path.parent / "config.json").is_file() and path.suffix in (".safetensors", ".bin"):
        config = json.loads((path.parent / "config.json").read_text())
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path)), config, path
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True), config, path
    except pickle.UnpicklingError as exc:
        text = str(exc).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        reason = " ".join(text.split(" Please use")[0].split()).rstrip(".") or "unpickling failed"
        if "Unsupported global" in reason:
            raise CheckpointError(
                f"{path}: refused by weights-only loading: it holds Python objects other than "
                f"tensors and plain containers ({reason})"
            ) from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({reason})") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc


def _load_strict(model: DinoVisionTransformer, sd: StateDict, source: str) -> None:
    """Copy every tensor or fail naming what does not fit: never half a model."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    mismatched = sorted(k for k in set(sd) & set(expected) if sd[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if mismatched:
            parts.append("shape mismatch: " + show(
                [f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}" for k in mismatched]))
        raise CheckpointError(f"{source}: checkpoint does not fit the backbone; " + "; ".join(parts))
    model.load_state_dict(sd, strict=True)


def backbone_from_object(obj: Any, source: str = "checkpoint", config: dict[str, Any] | None = None,
                         num_heads: int | None = None) -> DinoVisionTransformer:
    """Build and strictly fill a backbone from a loaded checkpoint object of any supported kind."""
    config = config or {}
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        try:
            arch = ViTArch.from_dict(obj["arch"])
            sd = dict(obj["state_dict"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: malformed {FORMAT} checkpoint ({exc})") from exc
    else:
        try:
            sd = to_meta_layout(obj)
            arch = infer_arch(
                sd,
                num_heads=num_heads or config.get("num_attention_heads"),
                norm_eps=config.get("layer_norm_eps", 1e-6),
            )
        except ValueError as exc:
            raise CheckpointError(f"{source}: {exc}") from exc
    model = DinoVisionTransformer(arch)
    _load_strict(model, {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, source)
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        model.embed_defaults = dict(obj.get("embed") or {})
    return model.eval()


def read_train_record(path: str | os.PathLike) -> dict[str, Any]:
    """The ``train`` record of a dinoseek checkpoint (config, data digest, steps); {} for other files."""
    path = Path(path)
    if path.is_dir() or path.suffix == ".safetensors":
        return {}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return {}
    return dict(obj.get("train") or {}) if isinstance(obj, dict) and obj.get("format") == FORMAT else {}


def load_backbone(path_or_name: str | os.PathLike | None = None, search_dirs: list[Path] | None = None,
                  num_heads: int | None = None) -> DinoVisionTransformer:
    """Load a backbone in eval mode from any supported file, directory or name (None = default).

    The returned model carries ``checkpoint_path`` and ``checkpoint_digest`` (sha256 of the file).
    """
    path = resolve_checkpoint(path_or_name, search_dirs)
    obj, config, weights_file = _read_object(path)
    model = backbone_from_object(obj, source=str(path), config=config, num_heads=num_heads)
    model.checkpoint_path = str(path)
    model.checkpoint_digest = file_digest(weights_file)
    return model


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, then rename: readers never see half
    a file, and a crash leaves the previous file intact. Permissions follow the umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(model: DinoVisionTransformer, path: str | os.PathLike, train: dict[str, Any] | None = None,
                    dtype: torch.dtype | None = None, extra: dict[str, Any] | None = None) -> str:
    """Write a ``dinoseek-vit/1`` file atomically (temp file + rename); returns its sha256.

    ``dtype`` (e.g. ``torch.float16``) shrinks the stored floating-point tensors; loading casts back.
    """
    sd = {k: (v.detach().to("cpu", dtype) if dtype and v.is_floating_point() else v.detach().cpu())
          for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "arch": model.arch.to_dict(),
        "state_dict": sd,
        "train": train or {},
        "embed": dict(getattr(model, "embed_defaults", {})),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    atomic_torch_save(payload, path)
    return file_digest(path)
