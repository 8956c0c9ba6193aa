"""A similar link between two near groups stands only if another pair across them is related too;
the cross pairs judged for it are the same however the groups' near links were found."""

from __future__ import annotations

from indexer.duplicates.groups import JudgedEdge
from indexer.duplicates.support import CROSS_PAIRS, supported
from indexer.verdicts import PairEvidence


def _edge(a: int, b: int, verdict: str) -> JudgedEdge:
    return JudgedEdge(a, b, verdict, 0.9 if verdict == "near" else 0.3, 0.8, {})


def _asked_and_kept(near_b: list[tuple[int, int]], related: set[tuple[int, int]]):
    """Which cross pairs the check asks about, and which edges it keeps, for a similar link 1-20
    between the near groups 1-8 and 20-27 (the latter's near links in the order given)."""
    edges = [_edge(a, a + 1, "near") for a in range(1, 8)] + [_edge(a, b, "near") for a, b in near_b]
    edges.append(_edge(1, 20, "similar"))
    asked: list[tuple[int, int]] = []

    def judge(pairs):
        asked.extend(pairs)
        out = {}
        for pair in pairs:
            evidence = PairEvidence(0.5)
            evidence.verdict = "similar" if pair in related else None
            out[pair] = evidence
        return out

    known = {(e.a, e.b): e.verdict for e in edges}
    kept = supported(edges, known, judge)
    return sorted(asked), [(e.a, e.b) for e in kept]


def test_the_cross_pairs_asked_do_not_depend_on_the_order_the_groups_were_joined():
    chain = [(b, b + 1) for b in range(20, 27)]
    shuffled = [(20, 27), (21, 22), (21, 27), (22, 23), (23, 24), (24, 25), (25, 26)]  # 27 joined early
    asked_chain, kept_chain = _asked_and_kept(chain, set())
    asked_shuffled, kept_shuffled = _asked_and_kept(shuffled, set())
    assert len(asked_chain) == CROSS_PAIRS and asked_chain == asked_shuffled
    assert (1, 20) not in kept_chain and (1, 20) not in kept_shuffled  # borne out by none: dropped
    # the link's own picture's pairs first, by id
    assert asked_chain == [(1, b) for b in range(21, 21 + CROSS_PAIRS)]

    asked, kept = _asked_and_kept(shuffled, {(1, 23)})  # one of them related: the link stands
    assert (1, 23) in asked and (1, 20) in kept
