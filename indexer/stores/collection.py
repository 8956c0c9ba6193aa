"""A collection's two stores: global descriptors, and pooled patch cells (float16)."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.stores.base import VectorStore


@dataclass
class CollectionStores:
    """The two stores of a collection, handled together."""

    global_: VectorStore
    patches: VectorStore

    def persist(self) -> None:
        self.global_.persist()
        self.patches.persist()

    def refresh(self) -> None:
        """Pick up what another process wrote to file-backed stores since they were opened."""
        self.global_.refresh()
        self.patches.refresh()

    def close(self) -> None:
        self.global_.close()
        self.patches.close()

    def discard(self) -> None:
        """Let go of stores whose files were deleted, without writing anything back."""
        self.global_.discard()
        self.patches.discard()
