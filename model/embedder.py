"""Batched inference: PIL images or image files → global descriptors and patch-token grids."""

from __future__ import annotations

import copy
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.ao.quantization import quantize_dynamic

from model.pooling import POOLINGS, descriptor_dim, global_descriptor
from model.preprocess import ImageDecodeError, load_image, preprocess
from model.vision_transformer import DinoVisionTransformer

DEFAULT_IMAGE_SIZE = 224
DEFAULT_POOLING = "cls+gem"
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class Embedding:
    """Results for a batch, in input order.

    ``vectors``: (B, Dg) float32, L2-normalised. ``patches``: one (h, w, D) float32 grid per image
    (grids differ in shape because aspect ratios are kept). ``image_sizes``: (width, height) of each
    input image, so a patch cell maps back to pixels. With ``embed_paths``, ``paths`` lists the files
    that succeeded and ``errors`` the ones that failed, as ``{"path", "error"}``.
    """

    vectors: np.ndarray
    patches: list[np.ndarray]
    image_sizes: list[tuple[int, int]]
    paths: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; anything else as given (validated)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    return dev


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def quantize_int8(vit: nn.Module) -> nn.Module:
    """A copy of ``vit`` with its Linear layers dynamically quantised to int8 (CPU fast path)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch marks the eager quantisation API as deprecated
        return quantize_dynamic(copy.deepcopy(vit).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], workers: int, window: int) -> Iterator[R]:
    """``map(fn, items)`` on a thread pool, in order, with at most ``window`` results in flight."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Embedder:
    """Preprocess images, run the backbone in ``inference_mode`` and pool global descriptors.

    ``image_size`` and ``pooling`` default to what the checkpoint recommends (``vit.embed_defaults``),
    else 224 px and ``cls+gem``. Images are grouped by their model input shape (aspect ratio is kept), so every batch is dense
    and a result does not depend on what else was in the batch. bf16 autocast is used on CUDA only;
    ``quantize=True`` uses int8 dynamic quantisation of the Linear layers on CPU; ``draft`` lets
    ``embed_paths`` decode large JPEGs at a reduced scale (never below ``image_size``).
    ``mirror_invariant`` (default: the checkpoint's recommendation) averages the descriptors of the
    image and its mirror image, so a flipped copy gets the same vector, at twice the compute.
    """

    def __init__(
        self,
        vit: DinoVisionTransformer,
        device: str | torch.device = "auto",
        image_size: int | None = None,
        pooling: str | None = None,
        gem_p: float = 3.0,
        batch_size: int = 32,
        quantize: bool = False,
        autocast_bf16: bool = True,
        draft: bool = True,
        mirror_invariant: bool | None = None,
    ) -> None:
        defaults = getattr(vit, "embed_defaults", {})
        if mirror_invariant is None:
            mirror_invariant = bool(defaults.get("mirror_invariant", False))
        self.mirror_invariant = mirror_invariant
        image_size = image_size or int(defaults.get("image_size", DEFAULT_IMAGE_SIZE))
        pooling = pooling or str(defaults.get("pooling", DEFAULT_POOLING))
        if image_size < vit.patch_size:
            raise ValueError(f"image_size {image_size} is smaller than one patch ({vit.patch_size})")
        self.device = resolve_device(device)
        self.image_size = image_size
        self.pooling = pooling
        self.gem_p = gem_p
        self.batch_size = batch_size
        self.patch_size = vit.patch_size
        self.embed_dim = vit.embed_dim
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        if quantize and self.device.type != "cpu":
            raise ValueError("int8 dynamic quantisation is a CPU fast path; use bf16 on CUDA")
        model = quantize_int8(vit) if quantize else vit.to(self.device).eval()
        self.vit = model
        self.autocast = autocast_bf16 and self.device.type == "cuda"
        self.draft = draft  # JPEG draft-mode decoding in embed_paths

    @property
    def decode_workers(self) -> int:
        """Decode threads that keep the model fed without starving it of cores.

        On CPU the forward pass wants every core and its threads wait for the slowest one, while
        decoding a photo costs about a tenth of its forward pass, so decoding gets a quarter of the
        cores (one on a 2-core machine, where one and two threads measured the same in
        bench/pipeline.py); a GPU model leaves all but one core to decoding.
        """
        cores = available_cores()
        if self.device.type == "cuda":
            return max(1, min(16, cores - 1))
        return max(1, cores // 4)

    @property
    def dim(self) -> int:
        """Length of the global descriptor."""
        return descriptor_dim(self.embed_dim, self.pooling)

    def preprocess(self, img: Image.Image) -> torch.Tensor:
        return preprocess(img, self.image_size, self.patch_size)

    @torch.inference_mode()
    def forward_batch(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same-shape normalised batch (B, 3, H, W) → (global vectors (B, Dg), patch grids (B, h, w, D))."""
        b, _, h, w = batch.shape
        batch = batch.to(self.device, non_blocking=True)
        if self.mirror_invariant:  # the picture and its mirror image in one pass
            batch = torch.cat((batch, torch.flip(batch, dims=[3])))
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast):
            feats = self.vit.forward_features(batch)
        cls = feats["x_norm_clstoken"].float()
        patches = feats["x_norm_patchtokens"].float()
        vectors = global_descriptor(cls, patches, self.pooling, self.gem_p)
        if self.mirror_invariant:  # mean of the two descriptors: a mirrored copy gets the same vector
            vectors = torch.nn.functional.normalize(vectors[:b] + vectors[b:], dim=-1)
            patches = patches[:b]
        grid = patches.reshape(b, h // self.patch_size, w // self.patch_size, -1)
        return vectors, grid

    def embed_tensors(self, tensors: Sequence[torch.Tensor]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Preprocessed (3, H, W) tensors of any shapes → vectors and patch grids, in input order."""
        vectors: list[np.ndarray | None] = [None] * len(tensors)
        grids: list[np.ndarray | None] = [None] * len(tensors)
        buckets: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(tensors):
            buckets.setdefault(tuple(t.shape), []).append(i)
        for indices in buckets.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                vecs, grid = self.forward_batch(torch.stack([tensors[i] for i in chunk]))
                vecs, grid = vecs.cpu().numpy(), grid.cpu().numpy()
                for j, i in enumerate(chunk):
                    vectors[i], grids[i] = vecs[j], grid[j]
        out = np.stack(vectors) if tensors else np.zeros((0, self.dim), np.float32)
        return out.astype(np.float32, copy=False), list(grids)

    def embed(self, images: Sequence[Image.Image]) -> Embedding:
        """PIL images → ``Embedding`` (vectors, patch grids, sizes), in input order."""
        tensors = [self.preprocess(img) for img in images]
        vectors, grids = self.embed_tensors(tensors)
        return Embedding(vectors, grids, [img.size for img in images])

    def _load(self, path: str) -> tuple[str, torch.Tensor | None, tuple[int, int] | None, str | None]:
        try:
            img = load_image(path, target_long_side=self.image_size if self.draft else None)
            return path, self.preprocess(img), img.size, None
        except ImageDecodeError as exc:  # unreadable, truncated, not an image, too large
            return path, None, None, str(exc)

    def embed_paths(self, paths: Iterable[str | os.PathLike], workers: int | None = None) -> Embedding:
        """Decode files on ``workers`` threads (default: ``decode_workers``) while the model runs; a
        bad file fails alone.

        JPEGs use draft-mode decoding; the reported size is the decoded (possibly reduced) size.
        """
        tensors: list[torch.Tensor] = []
        result = Embedding(np.zeros((0, self.dim), np.float32), [], [])
        vec_parts: list[np.ndarray] = []

        def flush() -> None:
            if tensors:
                vecs, grids = self.embed_tensors(tensors)
                vec_parts.append(vecs)
                result.patches.extend(grids)
                tensors.clear()

        workers = workers or self.decode_workers
        for path, tensor, size, error in prefetch_map(self._load, (str(p) for p in paths), workers,
                                                      window=2 * self.batch_size):
            if error is not None:
                result.errors.append({"path": path, "error": error})
                continue
            tensors.append(tensor)
            result.paths.append(path)
            result.image_sizes.append(size)
            if len(tensors) >= 4 * self.batch_size:
                flush()
        flush()
        if vec_parts:
            result.vectors = np.concatenate(vec_parts)
        return result
