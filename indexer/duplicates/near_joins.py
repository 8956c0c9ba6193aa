"""The pictures a scan's verified near links have joined so far, so that it skips the pairs that
could not change its groups.

A near group is a connected component of near links (grouping.py): once two pictures are joined,
the geometry of a pair between them changes no group, only the evidence a review could show for
that pair. A scan therefore verifies its pairs strongest first (by the cheap copy probability), a
pair that could join two sets before those that the stronger ones could join already, and skips
those already joined; with many copies of one picture that is about one verified pair per copy
instead of one per neighbour (docs/BENCHMARKS.md, "Duplicate scan on stored features"). A
link joins only at the review's near threshold, never joins two pictures a reviewer marked apart
(as grouping does), and a picture marked apart from another is never skipped: its group may split
where its links go.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from indexer.duplicates.grouping import ApartUnionFind
from indexer.verdicts import Calibration, PairEvidence
from indexer.verification import Geometry

Pair = tuple[int, int]


class NearJoins:
    """Disjoint sets of pictures joined by near links, with each pair's cheap evidence to judge
    it once verified; ``skipped`` are the pairs left unverified as joined."""

    def __init__(self, calibration: Calibration, evidence: Mapping[Pair, PairEvidence],
                 near_floor: float | None = None, apart: Iterable[Pair] = ()) -> None:
        self.calibration = calibration
        self.evidence = dict(evidence)
        self.near_floor = near_floor  # the review's near threshold: weaker near links do not join
        self.sets = ApartUnionFind(apart)
        self.keep = set(self.sets.avoid)  # pictures a reviewer kept apart from another: their pairs are all verified
        self.skipped: set[Pair] = set()

    def joined(self, a: int, b: int) -> bool:
        """Whether a pair of a and b could change no group: they are joined, and neither is kept."""
        return a not in self.keep and b not in self.keep and self.sets.find(a) == self.sets.find(b)

    def link(self, a: int, b: int, evidence: PairEvidence) -> None:
        """Judge the pair on ``evidence`` (a copy is judged, the original is left as it is) and
        join a and b if it is a near link at the floor."""
        self._join_if_near(a, b, self.calibration.judge(replace(evidence)))

    def link_all(self, edges: list[tuple[int, int, PairEvidence]]) -> None:
        """``link`` each edge (a, b, evidence), judged all at once."""
        judged = [replace(evidence) for _, _, evidence in edges]
        self.calibration.judge_all(judged)
        for (a, b, _), evidence in zip(edges, judged):
            self._join_if_near(a, b, evidence)

    def _join_if_near(self, a: int, b: int, judged: PairEvidence) -> None:
        if judged.verdict == "near" and (self.near_floor is None or (judged.copy_probability or 0.0) >= self.near_floor):
            self.sets.union(a, b)

    def settle(self, a: int, b: int, geometry: Geometry | None) -> None:
        """The pair verified: judged on its cheap evidence and ``geometry``."""
        self.link(a, b, replace(self.evidence[(a, b)], geometry=geometry))

    def strongest_first(self, pairs: Iterable[Pair]) -> list[Pair]:
        """``pairs`` by their cheap copy probability, highest first (ties by pair)."""
        pairs = list(pairs)
        probability = self.calibration.cheap_probabilities([self.evidence[p] for p in pairs]).tolist()
        return [pair for _, pair in sorted(zip((-p for p in probability), pairs))]

    def spanning_first(self, pairs: Iterable[Pair]) -> list[Pair]:
        """``pairs`` strongest first, but those that could join two sets (were every stronger pair a
        near link) ahead of the rest: once those joins are made, the rest are skipped wherever a
        chunk of a scan job holds them, instead of being verified beside the pairs that join them."""
        hoped = ApartUnionFind()  # the sets as they would be if every pair taken so far were near
        first, later = [], []
        for pair in self.strongest_first(pairs):
            (first if self._could_join(hoped, *pair) else later).append(pair)
        return first + later

    def waves(self, pairs: Iterable[Pair], size: int) -> Iterator[list[Pair]]:
        """``pairs`` in their order, in waves of at most ``size`` that could each join two sets, were
        the earlier pairs of its wave near links; the others wait for the next wave, by which the
        sets are settled (``settle``) and those then joined are skipped (``skipped``). So a wave's
        pairs can be verified side by side, and a pair is verified only where the pairs verified
        before it in this order did not join its pictures."""
        queue = deque(pairs)
        while queue:
            hoped = ApartUnionFind()
            wave: list[Pair] = []
            waiting: list[Pair] = []
            while queue and len(wave) < size:
                pair = queue.popleft()
                if self.joined(*pair):
                    self.skipped.add(pair)
                else:
                    (wave if self._could_join(hoped, *pair) else waiting).append(pair)
            queue.extendleft(reversed(waiting))
            yield wave

    def _could_join(self, hoped: ApartUnionFind, a: int, b: int) -> bool:
        """Whether the pair could join two of ``hoped``'s sets (and joins them there); a picture a
        reviewer kept apart always could."""
        return a in self.keep or b in self.keep or hoped.union(self.sets.find(a), self.sets.find(b))

    def part(self, pairs: list[Pair]) -> NearJoins:
        """A copy for these pairs alone (a worker process's share): their evidence, and their
        pictures' sets as they are now."""
        pictures = {i for pair in pairs for i in pair}
        out = NearJoins(self.calibration, {p: self.evidence[p] for p in pairs}, self.near_floor)
        find = self.sets.find
        out.sets.parent = {i: find(i) for i in pictures}
        roots = set(out.sets.parent.values())
        out.sets.parent.update((root, root) for root in roots)
        out.sets.avoid = {root: {find(x) for x in self.sets.avoid[root]} for root in roots if root in self.sets.avoid}
        out.keep = self.keep & pictures
        return out
