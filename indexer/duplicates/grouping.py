"""From judged pairs to the three tiers of groups, at the review's thresholds and keeping apart every
pair a reviewer marked "not a duplicate": a scan groups its fresh edges this way, and the review
re-groups the saved edges when its thresholds move, without scanning again (``groups_at``).

Near groups are the connected components of near edges, similar groups those of near and similar
edges that hold more than one near group or single picture. A group's score is its weakest link
(Kruskal, strongest links first): the copy probability for near groups, the cosine for similar
ones; its evidence is that link's. A link that would put two pictures marked apart in one group is
skipped, so they stay apart however many other pictures connect them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from indexer.duplicates.groups import Group, JudgedEdge

TIER_ORDER = {"exact": 0, "near": 1, "similar": 2}


def pair(a: int, b: int) -> tuple[int, int]:
    """The unordered pair's key: the smaller id first."""
    return (a, b) if a < b else (b, a)


class ApartUnionFind:
    """Disjoint sets of image ids, merged edge by edge (the smaller id roots a set), never merging two
    sets that hold a pair marked apart."""

    def __init__(self, apart: Iterable[tuple[int, int]] = ()) -> None:
        self.parent: dict[int, int] = {}
        self.avoid: dict[int, set[int]] = {}  # root → ids its set must never join
        for a, b in apart:
            self.avoid.setdefault(a, set()).add(b)
            self.avoid.setdefault(b, set()).add(a)

    def find(self, x: int) -> int:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while self.parent.get(x, x) != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> bool:
        """Merge a's and b's sets; False when they are one already or must stay apart."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        avoid_a, avoid_b = self.avoid.get(ra, set()), self.avoid.get(rb, set())
        if any(self.find(x) == rb for x in avoid_a) or any(self.find(x) == ra for x in avoid_b):
            return False
        root, child = min(ra, rb), max(ra, rb)
        self.parent[child] = root
        if avoid_a or avoid_b:
            self.avoid[root] = avoid_a | avoid_b
            self.avoid.pop(child, None)
        return True

    def components(self, nodes: Iterable[int]) -> dict[int, list[int]]:
        """The sets of more than one of ``nodes``, by root, members in id order."""
        out: dict[int, list[int]] = {}
        for i in sorted(set(nodes)):
            out.setdefault(self.find(i), []).append(i)
        return {root: members for root, members in out.items() if len(members) > 1}


def split_exact(groups: list[Group], apart: set[tuple[int, int]]) -> list[Group]:
    """Exact groups with the pairs marked apart split off (identical bytes kept apart on purpose)."""
    out = []
    for g in groups:
        ids = sorted(g.image_ids)
        if not any(pair(a, b) in apart for i, a in enumerate(ids) for b in ids[i + 1:]):
            out.append(g)
            continue
        uf = ApartUnionFind(p for p in apart if p[0] in g.image_ids and p[1] in g.image_ids)
        for i, a in enumerate(ids):  # every pair of identical pictures is a link: join all that may be
            for b in ids[:i]:
                uf.union(a, b)
        paths = dict(zip(g.image_ids, g.paths))
        out += [Group("exact", members, [paths[i] for i in members], g.score)
                for members in uf.components(ids).values()]
    return out


def tiered_groups(edges: list[JudgedEdge], paths: dict[int, str], apart: set[tuple[int, int]] = frozenset()
                  ) -> list[Group]:
    """Near groups from near edges; similar groups from near and similar edges (Kruskal each)."""
    out: list[Group] = []
    near = sorted((e for e in edges if e.verdict == "near"), key=lambda e: -e.copy_probability)
    near_uf, near_weakest = ApartUnionFind(apart), {}
    for e in near:
        if near_uf.union(e.a, e.b):
            near_weakest[near_uf.find(e.a)] = e
    for root, members in near_uf.components(i for e in near for i in (e.a, e.b)).items():
        e = near_weakest[root]
        out.append(Group("near", members, [paths[i] for i in members], e.copy_probability,
                         {"pair": [e.a, e.b], **e.evidence}))
    related = sorted(edges, key=lambda e: -e.descriptor)
    uf, weakest = ApartUnionFind(apart), {}
    for e in related:
        if uf.union(e.a, e.b):
            weakest[uf.find(e.a)] = e
    for root, members in uf.components(i for e in related for i in (e.a, e.b)).items():
        if len({near_uf.find(i) for i in members}) < 2:
            continue  # one near group and nothing else: not another shot of anything
        e = weakest[root]
        out.append(Group("similar", members, [paths[i] for i in members], e.descriptor,
                         {"pair": [e.a, e.b], **e.evidence}))
    return out


def ordered(groups: list[Group]) -> list[Group]:
    """Exact, then near, then similar; larger groups first."""
    return sorted(groups, key=lambda g: (TIER_ORDER[g.kind], -len(g.image_ids), g.image_ids[0]))


def at_thresholds(edges: list[JudgedEdge], thresholds: dict) -> list[JudgedEdge]:
    """The edges kept at ``thresholds``: a near pair below the near one still relates two shots of a
    scene (it becomes a similar pair), and any pair below the similar one goes."""
    near, similar = thresholds.get("near"), thresholds.get("similar")
    out = []
    for e in edges:
        if e.verdict == "near" and near is not None and e.copy_probability < near:
            e = replace(e, verdict="similar")
        if e.verdict == "similar" and similar is not None and e.descriptor < similar:
            continue
        out.append(e)
    return out


def groups_at(exact: list[Group], edges: list[JudgedEdge], paths: dict[int, str], apart: set[tuple[int, int]],
              thresholds: dict) -> list[Group]:
    """The three tiers, in order, from the exact groups and the judged pairs kept at ``thresholds``,
    with the pairs marked apart kept apart: what a scan saves and what the review re-makes."""
    return ordered(split_exact(exact, apart) + tiered_groups(at_thresholds(edges, thresholds), paths, apart))
