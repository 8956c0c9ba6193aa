"""Candidate pairs by shared local patches: the copies the descriptor's nearest-neighbour graph
does not bring together (a photo padded, inside a screenshot, rotated, strongly cropped).

Each picture's stored ORB descriptors are hashed TABLES times, each time on KEY_BITS bits drawn
(with a fixed seed) from the descriptor's 256; two pictures whose patches share a bucket get a
vote weighted by the bucket's rarity, log(pictures / pictures in the bucket), and a pair's votes are
divided by what each picture shares with itself (a cosine, so pictures with many keypoints do not
outvote the rest). Buckets held by more than MAX_BUCKET pictures are left out: patches that many
pictures have (flat texture, interface chrome) say nothing about any pair. Each picture's
NEIGHBOURS best-voted others at MIN_SIMILARITY or more are candidates,
verified like the graph's (docs/BENCHMARKS.md, "Duplicate scan on stored features"). Reads the
stored features only, a chunk of pictures at a time; memory: about 8 bytes a keypoint a table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import scipy.sparse as sparse

KEY_BITS = 24
TABLES = 4
MAX_BUCKET = 50
NEIGHBOURS = 3  # candidates per picture
# a pair whose shared buckets' weight is under this share of what the two share with themselves
# (a cosine of their bucket weights) is no candidate. On photos-1k + 2 copies each, 3 neighbours
# at 0.008 add 2,679 pairs to the graph's 34,725 and give 1,951 of the 2,000 copies a candidate
# pair with their photo (1,521 by the graph alone); 8 neighbours: 5,042 pairs, 1,953 copies
MIN_SIMILARITY = 0.008
ROWS_PER_BLOCK = 2048  # pictures whose votes are summed at once
SEED = 0

Descriptors = tuple[int, np.ndarray]  # image id, (n, 32) uint8 ORB descriptors


def _key_bits() -> list[np.ndarray]:
    rng = np.random.default_rng(SEED)
    return [np.sort(rng.choice(256, KEY_BITS, replace=False)) for _ in range(TABLES)]


def bucket_keys(descriptors: np.ndarray, tables: list[np.ndarray] | None = None) -> np.ndarray:
    """(n, TABLES) bucket keys of n descriptors: each table's bits packed into one integer."""
    bits = np.unpackbits(np.asarray(descriptors, dtype=np.uint8).reshape(-1, 32), axis=1, bitorder="little")
    weights = np.int64(1) << np.arange(KEY_BITS, dtype=np.int64)
    return np.stack([bits[:, chosen].astype(np.int64) @ weights for chosen in (tables or _key_bits())], axis=1)


def shared_patch_pairs(pictures: Iterable[Descriptors]) -> list[tuple[int, int, float]]:
    """Candidate pairs (a < b, their vote similarity) of the pictures: each picture's NEIGHBOURS
    best-voted others at MIN_SIMILARITY or more."""
    tables = _key_bits()
    ids: list[int] = []
    keys, owners = [], []
    for image_id, descriptors in pictures:
        if len(descriptors):
            keys.append(bucket_keys(descriptors, tables))
            owners.append(np.full(len(descriptors), len(ids), dtype=np.int64))
        ids.append(int(image_id))
    if len(ids) < 2 or not keys:
        return []
    key, owner = np.concatenate(keys), np.concatenate(owners)
    matrices = [_bucket_matrix(key[:, t], owner, len(ids)) for t in range(TABLES)]
    own = sum(np.asarray(m.multiply(m).sum(axis=0)).ravel() for m in matrices)  # each picture's vote for itself
    scale = 1.0 / np.sqrt(np.maximum(own, 1e-12))
    out: dict[tuple[int, int], float] = {}
    for rows, votes in _vote_blocks(matrices, len(ids)):
        for row, (columns, weights) in zip(rows, votes):
            for column, weight in _best(columns, weights * scale[row] * scale[columns], row):
                a, b = ids[row], ids[column]
                pair = (a, b) if a < b else (b, a)
                out[pair] = max(out.get(pair, 0.0), weight)
    return [(a, b, v) for (a, b), v in sorted(out.items())]


def _bucket_matrix(key: np.ndarray, owner: np.ndarray, pictures: int) -> sparse.csc_matrix:
    """(buckets, pictures) rarity weights of one table: each picture once per bucket it has a patch in."""
    pairs = np.sort(key * pictures + owner)  # sorted by hand: np.unique hashes, 10x slower here
    pairs = pairs[np.r_[True, pairs[1:] != pairs[:-1]]]
    bucket_key, picture = pairs // pictures, pairs % pictures
    bucket = np.cumsum(np.r_[True, bucket_key[1:] != bucket_key[:-1]]) - 1
    counts = np.bincount(bucket)
    kept = (counts[bucket] >= 2) & (counts[bucket] <= MAX_BUCKET)
    weight = np.log(pictures / counts[bucket[kept]]).astype(np.float32)
    return sparse.csc_matrix((weight, (bucket[kept], picture[kept])), shape=(len(counts), pictures))


def _vote_blocks(matrices: list[sparse.csc_matrix], pictures: int) -> Iterator[tuple[range, list]]:
    """Each block of pictures' votes for every other picture: (rows, [(columns, votes) per row])."""
    for start in range(0, pictures, ROWS_PER_BLOCK):
        rows = range(start, min(pictures, start + ROWS_PER_BLOCK))
        total = None
        for m in matrices:
            block = (m[:, rows.start:rows.stop].T @ m).tocsr()
            total = block if total is None else total + block
        yield rows, [(total.indices[total.indptr[r]:total.indptr[r + 1]], total.data[total.indptr[r]:total.indptr[r + 1]])
                     for r in range(len(rows))]


def _best(columns: np.ndarray, weights: np.ndarray, row: int) -> list[tuple[int, float]]:
    """The NEIGHBOURS best-voted columns of a row (not the row itself) at MIN_SIMILARITY or more."""
    keep = (columns != row) & (weights >= MIN_SIMILARITY)
    columns, weights = columns[keep], weights[keep]
    top = np.argsort(-weights, kind="stable")[:NEIGHBOURS]
    return [(int(columns[i]), float(weights[i])) for i in top]
