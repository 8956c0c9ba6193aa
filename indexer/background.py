"""A picture's background: how much it resembles pictures in general, so that no pair is judged a
copy on resemblance alone (``verdicts.normalise``).

It is the mean similarity to the 2nd-11th nearest of a panel of PANEL_SIZE pictures spread evenly
over the collection's ids: the size of the set of distinct photos the verdict models were fitted
against (bench/fit_verdicts.py). Measured against the whole collection instead, a picture's
background grew with the collection and with the copies in it, and the same pair lost its verdict
as the library grew. The panel holds one picture of each photo: one that looks like a copy of a
picture drawn before it (cosine DISTINCT_BELOW or more) is left out, or a library of many copies
of few photos gives each picture its own copies as background, and its copies lose their verdict
(docs/BENCHMARKS.md, "Duplicate scan on stored features").
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.catalog.models import Image
from indexer.stores.base import VectorStore
from indexer.verdicts import background_mean

PANEL_SIZE = 300
REDRAW_GROWTH = 0.05  # a cached panel is drawn again once the collection's size has moved by this share
CACHED_PANELS = 16
DISTINCT_BELOW = 0.7  # panel pictures this alike show one photo (copies, a burst); unrelated ones stay under 0.52


@dataclass
class Panel:
    """Pictures of one collection (ids and global vectors) that backgrounds are measured against."""

    ids: np.ndarray
    vectors: np.ndarray  # (n, dim) float32, rows in the order of ids
    collection_size: int  # indexed vectors when it was drawn

    def backgrounds(self, vectors: np.ndarray, own_ids: list[int | None] | None = None) -> list[float | None]:
        """The background of each vector (None when the panel is too small); a vector of an indexed
        picture (its id in ``own_ids``) is not compared with itself."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if not len(self.ids) or not len(vectors):
            return [None] * len(vectors)
        sims = np.einsum("id,jd->ij", vectors, self.vectors)  # not BLAS: its spinning threads slow torch in this process
        if own_ids is not None:
            for row, own in enumerate(own_ids):
                if own is not None:
                    sims[row, self.ids == own] = -np.inf
        ordered = -np.sort(-sims, axis=1)
        return [background_mean(row[np.isfinite(row)]) for row in ordered]

    def background_of(self, ids: np.ndarray, vectors: np.ndarray) -> dict[int, float | None]:
        """``backgrounds`` of indexed pictures, by id."""
        ids = [int(i) for i in np.asarray(ids).tolist()]
        return dict(zip(ids, self.backgrounds(vectors, ids)))

    def backgrounds_in(self, store: VectorStore, ids: list[int], chunk: int = 4096) -> dict[int, float | None]:
        """``background_of`` every one of ``ids``, their vectors fetched from ``store`` a chunk at a time."""
        out: dict[int, float | None] = {}
        for start in range(0, len(ids), chunk):
            out.update(self.background_of(*store.fetch(np.asarray(ids[start:start + chunk], dtype=np.int64))))
        return out


def draw_panel(ids: list[int] | np.ndarray, store: VectorStore) -> Panel:
    """A panel of up to PANEL_SIZE of ``ids`` (the collection's indexed pictures), evenly spread,
    each a photo of its own (``distinct_rows``)."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    chosen = ids[np.unique(np.linspace(0, len(ids) - 1, min(PANEL_SIZE, len(ids))).astype(np.int64))] if len(ids) else ids
    found, vectors = store.fetch(chosen) if len(chosen) else (chosen, np.zeros((0, store.spec.dim), dtype=np.float32))
    found, vectors = np.asarray(found, dtype=np.int64), np.asarray(vectors, dtype=np.float32)
    kept = distinct_rows(vectors, DISTINCT_BELOW)
    return Panel(found[kept], vectors[kept], len(ids))


def distinct_rows(vectors: np.ndarray, below: float) -> np.ndarray:
    """The rows, in order, whose cosine to every row kept before them is under ``below``."""
    sims = np.einsum("id,jd->ij", vectors, vectors)  # not BLAS, as in Panel.backgrounds
    kept: list[int] = []
    for row in range(len(vectors)):
        if not kept or sims[row, kept].max() < below:
            kept.append(row)
    return np.array(kept, dtype=np.int64)


_panels: OrderedDict[tuple, Panel] = OrderedDict()


def collection_panel(session: Session, collection_id: int, store: VectorStore) -> Panel:
    """The collection's panel, drawn once and kept while the collection's size stays within
    REDRAW_GROWTH of the size it was drawn at (a query pays one count, not a draw)."""
    key = (str(session.get_bind().url), collection_id, store.spec)  # the spec names the store's generation
    size = store.count()
    panel = _panels.get(key)
    if panel is not None and abs(size - panel.collection_size) <= REDRAW_GROWTH * max(1, panel.collection_size):
        _panels.move_to_end(key)
        return panel
    ids = session.scalars(select(Image.id).where(Image.collection_id == collection_id, Image.status == "indexed")).all()
    panel = draw_panel(ids, store)
    panel.collection_size = size
    _panels[key] = panel
    while len(_panels) > CACHED_PANELS:
        _panels.popitem(last=False)
    return panel
