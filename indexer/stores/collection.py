"""A collection's two stores: global descriptors, and pooled patch cells (float16)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from indexer.stores.base import StoreError, VectorStore


class CollectionStores:
    """The two stores of a collection, handled together. The patch store is opened on first use:
    a duplicate scan, a duplicate check and a search by picture never read it, and it is about
    twenty times the global store (gigabytes at 100,000 images, read whole by a FAISS file)."""

    def __init__(self, global_: VectorStore, open_patches: Callable[[], VectorStore]) -> None:
        self.global_ = global_
        self._open_patches = open_patches
        self._patches: VectorStore | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def patches(self) -> VectorStore:
        """The patch store, opened now if it was not yet."""
        with self._lock:
            if self._patches is None:
                if self._closed:
                    raise StoreError(f"the patch store beside {self.global_.spec.name!r} is closed")
                self._patches = self._open_patches()
            return self._patches

    def _opened(self) -> list[VectorStore]:
        with self._lock:
            return [self.global_] + ([self._patches] if self._patches is not None else [])

    def persist(self) -> None:
        for store in self._opened():
            store.persist()

    def refresh(self) -> None:
        """Pick up what another process wrote to file-backed stores since they were opened (a
        patch store not opened yet will read its file as it is when first used)."""
        for store in self._opened():
            store.refresh()

    def close(self) -> None:
        stores = self._opened()
        self._closed = True
        for store in stores:
            store.close()

    def discard(self) -> None:
        """Let go of stores whose files were deleted, without writing anything back."""
        stores = self._opened()
        self._closed = True
        for store in stores:
            store.discard()
