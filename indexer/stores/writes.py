"""Vector writes recorded in order and applied to a collection's stores later, in one go.

Embedding needs no store: a worker embeds a whole chunk first, then takes the collection's writer
lock only to apply its writes, persist and commit. So several GPU workers embed at once even when
the stores are embedded files with a single writer. Copies of identical bytes are resolved when
applied, against the stores themselves, since their source may have been written by another
process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from indexer.stores.patches import PATCH_SLOTS, all_patch_ids, patch_ids


@dataclass
class _Copy:
    target: int
    source: int
    rows: int
    cols: int


@dataclass
class StoreWrites:
    """An ordered log of upserts, deletions and copies for one collection's two stores."""

    ops: list[tuple] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ops)

    def upsert_global(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ops.append(("upsert", "global", np.asarray(ids, dtype=np.int64), vectors))

    def upsert_patches(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.ops.append(("upsert", "patches", np.asarray(ids, dtype=np.int64), vectors))

    def drop_images(self, image_ids: list[int], patches_only: bool = False) -> None:
        """Remove images' vectors (their patch grids whatever shape they had; the global one too
        unless ``patches_only``)."""
        if not image_ids:
            return
        if not patches_only:
            self.ops.append(("delete", "global", np.asarray(image_ids, dtype=np.int64), None))
        self.ops.append(("delete", "patches", all_patch_ids(image_ids), None))

    def copy_image(self, target: int, source: int, rows: int, cols: int) -> None:
        """Give ``target`` the vectors of ``source`` (identical bytes), read when applied."""
        self.ops.append(("copy", None, None, _Copy(target, source, rows, cols)))

    def apply(self, stores) -> dict[int, str]:
        """Replay the log into ``stores`` (a ``CollectionStores``) and clear it. Returns the copies
        that could not be made, target id → why (their source's vectors are gone)."""
        failed: dict[int, str] = {}
        for op, which, ids, payload in self.ops:
            if op == "copy":
                error = _copy(stores, payload)
                if error:
                    failed[payload.target] = error
                continue
            store = stores.global_ if which == "global" else stores.patches
            if op == "upsert":
                store.upsert(ids, payload)
            else:
                store.delete(ids)
        self.ops.clear()
        return failed


def _copy(stores, c: _Copy) -> str | None:
    found, vectors = stores.global_.fetch(np.array([c.source]))
    if not len(found):
        return f"identical to image {c.source}, whose vectors are missing"
    stores.patches.delete(all_patch_ids([c.target]))
    stores.global_.upsert(np.array([c.target]), vectors)
    found_cells, cells = stores.patches.fetch(patch_ids(c.source, c.rows, c.cols))
    if len(found_cells):  # copied cells keep their row/column slots
        stores.patches.upsert(c.target * PATCH_SLOTS + found_cells % PATCH_SLOTS, cells)
    return None
