"""Similar pairs that the rest of their groups bear out: a pair judged two shots of one scene, of
which either picture has copies, stands only if another pair across the two near groups is judged
related too.

Two screenshots of different photos in one app's interface share the interface: the status bar,
the buttons. Their geometry is real, so the pair looks like two shots of one scene, and through
each screenshot's own photo it would join two different photos in one similar group. If two near
groups really show one scene, their other pictures show it as well: the photo in one and the
screenshot in the other, or the two photos, are related too (docs/BENCHMARKS.md, "Duplicate scan
on stored features"). Cross pairs not judged yet are judged here, up to CROSS_PAIRS a link.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from indexer.duplicates.groups import JudgedEdge
from indexer.verdicts import PairEvidence

Pair = tuple[int, int]
CROSS_PAIRS = 6  # cross pairs judged for a link that none of the judged ones bears out
RELATED = ("near", "similar")

PairJudge = Callable[[list[Pair]], dict[Pair, PairEvidence]]  # pairs → their judged evidence


def _key(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def _cross(link: JudgedEdge, side_a: list[int], side_b: list[int]) -> Iterator[Pair]:
    """The pairs across two groups but the link itself, the linked pictures' first (the likeliest
    to show what the other group shows), then by id: the same pairs however the groups were joined
    (which of their inner pairs a scan verified before it skipped the rest)."""
    own = _key(link.a, link.b)
    side_a, side_b = sorted(side_a), sorted(side_b)
    first = [(link.a, v) for v in side_b] + [(u, link.b) for u in side_a]
    rest = ((u, v) for u in side_a for v in side_b if u != link.a and v != link.b)
    for u, v in itertools.chain(first, rest):
        if u != v and _key(u, v) != own:
            yield _key(u, v)


class _Groups:
    """Near groups grown link by link (union-find keeping each group's members)."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}

    def find(self, x: int) -> int:
        while self.parent.get(x, x) != x:
            x = self.parent[x]
        return x

    def of(self, x: int) -> list[int]:
        return self.members.get(self.find(x), [x])

    def join(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            root, child = min(ra, rb), max(ra, rb)
            self.parent[child] = root
            self.members[root] = self.members.pop(root, [root]) + self.members.pop(child, [child])


class _Verdicts:
    """What is known of each pair (the pictures each is judged related to), judging the unknown
    ones on demand."""

    def __init__(self, known: dict[Pair, str | None], judge: PairJudge) -> None:
        self.judged = set(known)
        self.related: dict[int, set[int]] = {}
        for (a, b), verdict in known.items():
            if verdict in RELATED:
                self._relate(a, b)
        self.judge = judge

    def _relate(self, a: int, b: int) -> None:
        self.related.setdefault(a, set()).add(b)
        self.related.setdefault(b, set()).add(a)

    def bear_out(self, link: JudgedEdge, side_a: list[int], side_b: list[int]) -> bool:
        """Whether a pair across the two groups, other than the link, is judged related."""
        small, large = (side_a, set(side_b)) if len(side_a) <= len(side_b) else (side_b, set(side_a))
        own = _key(link.a, link.b)
        return any(v in large and _key(u, v) != own for u in small for v in self.related.get(u, ()))

    def unknown(self, link: JudgedEdge, side_a: list[int], side_b: list[int]) -> list[Pair]:
        """Up to CROSS_PAIRS cross pairs not judged yet."""
        return list(itertools.islice((p for p in _cross(link, side_a, side_b) if p not in self.judged), CROSS_PAIRS))

    def ask(self, pairs: list[Pair]) -> None:
        found = self.judge(pairs) if pairs else {}
        self.judged.update(pairs)
        for pair, evidence in found.items():
            if evidence.verdict in RELATED:
                self._relate(*pair)


def supported(edges: list[JudgedEdge], known: dict[Pair, str | None], judge: PairJudge) -> list[JudgedEdge]:
    """``edges`` without the similar links between groups that no other cross pair bears out.
    ``known``: every pair judged so far (verdict or None), by (smaller id, larger id)."""
    verdicts = _Verdicts(known, judge)
    groups = _Groups()
    for e in edges:
        if e.verdict == "near":
            groups.join(e.a, e.b)
    open_links = []
    for e in edges:
        side_a, side_b = groups.of(e.a), groups.of(e.b)
        if e.verdict == "similar" and groups.find(e.a) != groups.find(e.b) and (len(side_a) > 1 or len(side_b) > 1) \
                and not verdicts.bear_out(e, side_a, side_b):
            open_links.append((e, side_a, side_b))
    verdicts.ask(sorted({p for link in open_links for p in verdicts.unknown(*link)}))
    dropped = {_key(e.a, e.b) for e, side_a, side_b in open_links if not verdicts.bear_out(e, side_a, side_b)}
    return [e for e in edges if _key(e.a, e.b) not in dropped]
