"""Similar pairs that the rest of their groups bear out: a pair of pictures judged two shots of one
scene, where either has copies, stands only if another pair across the two near groups is judged
related too.

Two screenshots of different photos in one app's interface share the interface: the status bar,
the buttons. Their geometry is real, so the pair looks like two shots of one scene, and through
each screenshot's own photo it would join two different photos in one similar group. If two near
groups really show one scene, their other pictures show it as well: the photo in one and the
screenshot in the other, or the two photos, are related too (docs/BENCHMARKS.md, "Duplicate scan
on stored features"). Such cross pairs not judged yet are judged here, up to CROSS_PAIRS a link.
"""

from __future__ import annotations

from collections.abc import Callable

from indexer.duplicates.groups import JudgedEdge
from indexer.verdicts import PairEvidence

Pair = tuple[int, int]
CROSS_PAIRS = 6  # cross pairs judged for a link that none of the judged ones bears out
RELATED = ("near", "similar")

PairJudge = Callable[[list[Pair]], dict[Pair, PairEvidence]]  # pairs → their judged evidence


def _key(a: int, b: int) -> Pair:
    return (a, b) if a < b else (b, a)


def near_groups(edges: list[JudgedEdge]) -> dict[int, list[int]]:
    """Each picture of a near pair → the members of its near group (connected by near pairs)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for e in edges:
        if e.verdict == "near" and find(e.a) != find(e.b):
            ra, rb = find(e.a), find(e.b)
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for x in sorted({i for e in edges if e.verdict == "near" for i in (e.a, e.b)}):
        members.setdefault(find(x), []).append(x)
    return {x: group for group in members.values() for x in group}


def supported(edges: list[JudgedEdge], known: dict[Pair, str | None], judge: PairJudge) -> list[JudgedEdge]:
    """``edges`` without the similar links between near groups that no other cross pair bears out.
    ``known``: every pair judged so far (verdict or None), by (smaller id, larger id)."""
    groups = near_groups(edges)
    verdicts = dict(known)
    open_links: dict[Pair, list[Pair]] = {}
    for e in edges:
        if e.verdict != "similar":
            continue
        side_a, side_b = groups.get(e.a, [e.a]), groups.get(e.b, [e.b])
        if len(side_a) == 1 and len(side_b) == 1:
            continue  # two single pictures: nothing else to ask
        # the linked pictures with the other group's first: the likeliest to show the scene too
        cross = sorted({_key(u, v) for u in side_a for v in side_b if u != v} - {_key(e.a, e.b)},
                       key=lambda p: (e.a not in p and e.b not in p, p))
        if any(verdicts.get(p) in RELATED for p in cross):
            continue
        open_links[_key(e.a, e.b)] = [p for p in cross if p not in verdicts][:CROSS_PAIRS]
    asked = sorted({p for pairs in open_links.values() for p in pairs})
    for pair, evidence in (judge(asked) if asked else {}).items():
        verdicts[pair] = evidence.verdict
    dropped = {link for link, pairs in open_links.items() if not any(verdicts.get(p) in RELATED for p in pairs)}
    return [e for e in edges if _key(e.a, e.b) not in dropped]
