"""Copy-detection quality on real photos: recall@1/@10 per edit family and micro average precision.

Photos: the held-out split of ``photos-1k`` (every fifth file in name order, which training never
sees; see docs/MODEL.md). The first 150 held-out photos are indexed; each of the first 100 gets one
edited copy per family as a query (positives); the last 50 held-out photos are never indexed and
their edited copies are distractor queries (they must not match anything).

Methods: a random-initialised backbone, any checkpoints given (default: the shipped model), and a
64-bit perceptual hash (imagehash PHash, similarity = 1 − Hamming / 64).

    .venv/bin/python bench/quality.py [--model CKPT ...] [--image-size 224] [--poolings cls+gem]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from edits import FAMILIES, MILD, STRONG, reshoot, reshoot_parallax  # noqa: E402
from pairs import Pair, nearest_refs, pair_evidence  # noqa: E402

from indexer.verdicts import calibration_for  # noqa: E402
from model import Embedder, arch_by_name, build_vit, load_backbone, load_image  # noqa: E402
from model.checkpoint import DEFAULT_CHECKPOINT  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared/data/photos-1k"


def held_out(photos_dir: Path) -> list[Path]:
    """The benchmark split: every fifth photo in name order (index % 5 == 0)."""
    return [p for i, p in enumerate(sorted(photos_dir.glob("*.jpg"))) if i % 5 == 0]


def build_queries(refs: list[Path], distractors: list[Path], seed: int = 0):
    """[(family, PIL image, index of the source in refs or -1 for a distractor)]."""
    queries = []
    for family, fn in FAMILIES.items():
        for i, path in enumerate(refs[:100]):
            queries.append((family, fn(load_image(path), random.Random(f"{seed}-{family}-{i}")), i))
        for j, path in enumerate(distractors):
            queries.append((family, fn(load_image(path), random.Random(f"{seed}-{family}-d{j}")), -1))
    return queries


def micro_ap(scores: np.ndarray, correct: np.ndarray, n_positive: int) -> float:
    """DISC21-style µAP: rank every query's top-1 match by score; precision over correct ones."""
    order = np.argsort(-scores, kind="stable")
    hits = correct[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1, n_positive))


def evaluate(sim: np.ndarray, queries, threshold: float | None = None) -> dict:
    """``sim``: (Q, R) similarities of queries to indexed refs."""
    sources = np.array([q[2] for q in queries])
    families = np.array([q[0] for q in queries])
    top = np.argsort(-sim, axis=1)[:, :10]
    top1_score = sim[np.arange(len(sim)), top[:, 0]]
    positive = sources >= 0
    r1 = top[:, 0] == sources
    r10 = (top == sources[:, None]).any(axis=1)
    out = {"families": {}, "family_ap": {}}
    for fam in FAMILIES:
        m = (families == fam) & positive
        out["families"][fam] = (float(r1[m].mean()), float(r10[m].mean()))
        # this family's copies and its distractor queries ranked by top-1 score: tells methods
        # apart where recall@1 saturates (a correct match must also outscore every distractor)
        f = families == fam
        out["family_ap"][fam] = micro_ap(top1_score[f], (r1 & positive)[f], int(m.sum()))
    out["recall@1"] = float(r1[positive].mean())
    out["recall@10"] = float(r10[positive].mean())
    for group, fams in (("mild", MILD), ("strong", STRONG)):
        m = np.isin(families, fams) & positive
        out[f"{group}@1"] = float(r1[m].mean())
    out["uAP"] = micro_ap(top1_score, r1 & positive, int(positive.sum()))
    out["operating_points"] = operating_points(top1_score, r1 & positive, int(positive.sum()))
    if threshold is not None:  # the near-duplicate threshold the model ships with
        above = top1_score >= threshold
        correct = int((above & r1 & positive).sum())
        out["at_threshold"] = (threshold, correct / max(1, int(above.sum())), correct / int(positive.sum()))
    return out


def normalized_top1(sim: np.ndarray, neighbours: int = 10, beta: float = 1.0) -> np.ndarray:
    """Each query's top-1 score minus ``beta`` times its mean similarity to its next ``neighbours``
    nearest indexed images (the collection as background): a query that resembles everything
    (textures, flat scenes) no longer clears the threshold on resemblance alone."""
    ordered = -np.sort(-sim, axis=1)
    return ordered[:, 0] - beta * ordered[:, 1:1 + neighbours].mean(axis=1)


def normalized_ap(sim: np.ndarray, queries, neighbours: int = 10, beta: float = 1.0) -> float:
    """µAP of the top-1 matches ranked by their normalised score (the same matches as ``evaluate``)."""
    sources = np.array([q[2] for q in queries])
    r1 = np.argmax(sim, axis=1) == sources
    positive = sources >= 0
    return micro_ap(normalized_top1(sim, neighbours, beta), r1 & positive, int(positive.sum()))


def operating_points(scores: np.ndarray, correct: np.ndarray, n_positive: int,
                     targets: tuple[float, ...] = (0.9, 0.95, 0.99)) -> dict[float, tuple[float, float, float]]:
    """For each precision target: the lowest threshold on top-1 scores whose matches above it reach
    that precision, with (threshold, precision, recall) there. This is how the default
    near-duplicate threshold of ``dinoseek duplicates`` is chosen."""
    order = np.argsort(-scores, kind="stable")
    hits = correct[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    recall = np.cumsum(hits) / max(1, n_positive)
    ranked = scores[order]
    group_end = np.append(ranked[1:] != ranked[:-1], True)  # a threshold admits all tied scores at once
    out = {}
    for target in targets:
        ok = np.flatnonzero((precision >= target) & group_end)
        if len(ok):
            i = ok[-1]
            out[target] = (float(ranked[i]), float(precision[i]), float(recall[i]))
    return out


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ranking the pairs by ``scores`` with ``positive`` the relevant ones."""
    order = np.argsort(-scores, kind="stable")
    hits = positive[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / max(1, hits.sum()))


def fused_report(vit, refs_imgs, queries, sim: np.ndarray) -> None:
    """Copy-detection µAP of the queries' top-1 matches (found by the descriptor) re-scored by each
    piece of duplicate evidence and by the fused copy probability."""
    from model import Embedder

    embedder = Embedder(vit, device="cpu")
    cal = calibration_for(vit, float(vit.embed_defaults.get("near_threshold", 0.9)))
    sources = np.array([q[2] for q in queries])
    top = np.argmax(sim, axis=1)
    correct = top == sources
    positive = int((sources >= 0).sum())
    pairs = [Pair("query", q[0], q[1], int(r)) for q, r in zip(queries, top)]
    evidence = pair_evidence(embedder, refs_imgs, pairs, beta=cal.beta)
    scores = {"descriptor": [e.descriptor for e in evidence], "normalised descriptor": [e.normalised for e in evidence],
              "pHash": [e.hash for e in evidence], "geometry (inlier share)": [e.geometry.inlier_share for e in evidence],
              "geometry (photometric agreement)": [e.geometry.agreement for e in evidence]}
    scores["fusion without geometry"] = [cal.cheap_probability(replace(e, geometry=None)) for e in evidence]
    scores["fusion with geometry"] = [cal.judge(e).copy_probability for e in evidence]
    print(f"\ncopy detection µAP of the {len(queries)} queries' top-1 matches, re-scored ({cal.source}):\n")
    print("| score | µAP | precision / recall at its default |")
    print("|---|---|---|")
    defaults = {"descriptor": float(vit.embed_defaults.get("near_threshold", 0.9)), "fusion without geometry": 0.5,
                "fusion with geometry": 0.5}
    for name, values in scores.items():
        values = np.array(values, dtype=float)
        at = ""
        if name in defaults:
            above = values >= defaults[name]
            at = (f"{(correct & (sources >= 0))[above].mean():.3f} / {(above & correct & (sources >= 0)).sum() / positive:.3f}"
                  f" at {defaults[name]:.2f}")
        print(f"| {name} | {micro_ap(values, correct & (sources >= 0), positive):.3f} | {at} |")


def tier_report(vit, refs_imgs, distractor_imgs, n: int) -> None:
    """Duplicate tiers on held-out pairs: each edit family's copy of ``n`` photos (near), a re-shot
    of each (similar), and the distractors' copies with their nearest indexed photo (neither)."""
    from model import Embedder

    embedder = Embedder(vit, device="cpu")
    cal = calibration_for(vit, float(vit.embed_defaults.get("near_threshold", 0.9)))
    pairs = [Pair("copy", fam, fn(refs_imgs[i], random.Random(f"tier-{fam}-{i}")), i)
             for fam, fn in FAMILIES.items() for i in range(n)]
    pairs += [Pair("other shot", "reshoot", reshoot(refs_imgs[i], random.Random(f"tier-shot-{i}")), i) for i in range(n)]
    pairs += [Pair("other shot", "reshoot-parallax", reshoot_parallax(refs_imgs[i], random.Random(f"tier-shot2-{i}")), i)
              for i in range(n)]
    unrelated = [FAMILIES[f](img, random.Random(f"tier-u-{f}-{j}")) for j, img in enumerate(distractor_imgs)
                 for f in ("reencode", "crop_mild")]
    ref_vectors = embedder.embed(refs_imgs).vectors
    pairs += [Pair("unrelated", "nearest photo", q, r) for q, r in zip(unrelated, nearest_refs(embedder, ref_vectors, unrelated))]
    evidence = pair_evidence(embedder, refs_imgs, pairs, beta=cal.beta)
    labels = np.array([p.label for p in pairs])
    copy = labels == "copy"
    scores = {"descriptor": [e.descriptor for e in evidence], "normalised descriptor": [e.normalised for e in evidence],
              "pHash": [e.hash for e in evidence], "geometry (inlier share)": [e.geometry.inlier_share for e in evidence],
              "geometry (coverage)": [e.geometry.coverage for e in evidence],
              "geometry (photometric agreement)": [e.geometry.agreement for e in evidence]}
    unverified = [replace(e, geometry=None) for e in evidence]
    scores["fusion without geometry"] = [cal.cheap_probability(u) for u in unverified]
    scores["fusion with geometry (all pairs)"] = [cal.judge(replace(e)).copy_probability for e in evidence]
    # the verdicts as the product reaches them: geometry only where the cheap evidence leaves them open
    served = [e if cal.wants_geometry(u) else u for e, u in zip(evidence, unverified)]
    verdicts = np.array([cal.judge(e).verdict or "none" for e in served])
    print(f"\nduplicate tiers ({cal.source}; {copy.sum()} edited copies of {n} held-out photos, "
          f"{(labels == 'other shot').sum()} re-shots, {(labels == 'unrelated').sum()} unrelated nearest pairs):\n")
    print("| tier | precision | recall | same-scene precision |")
    print("|---|---|---|---|")
    for tier, label in (("near", "copy"), ("similar", "other shot")):
        called = verdicts == tier
        print(f"| {tier} | {(labels[called] == label).mean() if called.any() else 0:.3f} | "
              f"{(verdicts[labels == label] == tier).mean():.3f} | "
              f"{(labels[called] != 'unrelated').mean() if called.any() else 0:.3f} |")
    print(f"| neither (unrelated) | {(labels[verdicts == 'none'] == 'unrelated').mean():.3f} | "
          f"{(verdicts[labels == 'unrelated'] == 'none').mean():.3f} | |")
    old = float(vit.embed_defaults.get("near_threshold", 0.9))
    above = np.array(scores["descriptor"]) >= old
    print(f"\nthe descriptor threshold alone ({old:.2f}): near precision {copy[above].mean():.3f}, recall {above[copy].mean():.3f}")
    print("\nper edit family, share of copies judged near:", ", ".join(
        f"{fam} {(verdicts[(labels == 'copy') & (np.array([p.family for p in pairs]) == fam)] == 'near').mean():.2f}"
        for fam in FAMILIES))
    print("\ncopy detection average precision over these pairs (copies against re-shots and unrelated):\n")
    print("| evidence | AP |")
    print("|---|---|")
    for name, values in scores.items():
        print(f"| {name} | {average_precision(np.array(values, dtype=float), copy):.3f} |")


def phash_similarity(refs_imgs, query_imgs) -> np.ndarray:
    import imagehash

    def bits(img):
        return imagehash.phash(img).hash.flatten()

    r = np.stack([bits(i) for i in refs_imgs]).astype(np.int16)
    q = np.stack([bits(i) for i in query_imgs]).astype(np.int16)
    hamming = (q[:, None, :] != r[None, :, :]).sum(-1)
    return 1.0 - hamming / 64.0


def model_similarity(vit, refs_imgs, query_imgs, image_size: int, pooling: str, mirror: bool = False) -> np.ndarray:
    emb = Embedder(vit, device="cpu", image_size=image_size, pooling=pooling, mirror_invariant=mirror)
    r = emb.embed(refs_imgs).vectors
    q = emb.embed(query_imgs).vectors
    return q @ r.T


def product_similarity(refs: list[Path], queries, verify: bool, verify_top: int) -> tuple[np.ndarray, list[float]]:
    """The queries searched through the product (``search_picture``): the refs indexed into an
    embedded library with the configured model, each query saved as a PNG and read as a query
    file. Returns a (Q, R) matrix that orders each query's results as the product does (verified
    copies at 2 + their copy probability, the rest at their cosine, unreturned refs at -inf) and
    each query's latency in seconds."""
    import time

    from indexer.query import search_picture
    from indexer.query.search import read_query

    with indexed(refs) as (library, tmp):
        column = {p.name: i for i, p in enumerate(refs)}
        sim = np.full((len(queries), len(refs)), -np.inf, dtype=np.float32)
        times = []
        for q, (_, picture, _) in enumerate(queries):
            path = tmp / "query.png"
            picture.save(path)
            started = time.perf_counter()
            hits = search_picture(library, "bench", read_query(library, path), k=10, verify=verify,
                                  verify_top=verify_top)
            times.append(time.perf_counter() - started)
            for h in hits:
                verified = h.evidence is not None and h.evidence.verdict == "copy"
                sim[q, column[Path(h.path).name]] = 2.0 + h.evidence.copy_probability if verified else h.score
    return sim, times


@contextlib.contextmanager
def indexed(refs: list[Path]):
    """The refs indexed into an embedded library (SQLite, FAISS) with the configured model, in a
    temporary folder: (the library, the folder)."""
    import tempfile

    from dinoseek.settings import load_settings
    from indexer.jobs import index_paths
    from indexer.library import Library

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "refs"
        folder.mkdir()
        for f in refs:
            (folder / f.name).symlink_to(f.resolve())
        settings = replace(load_settings(), home=Path(tmp) / "home", database_url=f"sqlite:///{tmp}/c.db",
                           vector_backend="faiss")
        library = Library(settings)
        try:
            index_paths(library, "bench", [folder], follow_symlinks=True)
            yield library, Path(tmp)
        finally:
            library.close()


def check_report(args) -> None:
    """Duplicate checks as the product serves them (``check_upload``): the held-out refs indexed,
    each query sent as a JPEG upload; per family, the share whose source is judged ``near`` and
    the queries (a distractor's included) that judged any other ref ``near`` or ``similar``."""
    import io
    import time

    from indexer.duplicates import check_upload
    from indexer.uploads import Upload

    split = held_out(args.photos)
    refs, distractors = split[:150], split[150:]
    queries = build_queries(refs, distractors)
    if args.families:
        queries = [q for q in queries if q[0] in args.families.split(",")]
    found: dict[str, list[bool]] = {}
    wrong: dict[str, list[bool]] = {}
    times = []
    with indexed(refs) as (library, _):
        for family, picture, source in queries:
            buffer = io.BytesIO()
            picture.convert("RGB").save(buffer, "JPEG", quality=90)
            started = time.perf_counter()
            _, matches = check_upload(library, "bench", Upload("query.jpg", buffer.getvalue()))
            times.append(time.perf_counter() - started)
            names = {Path(m.hit.path).name: m.evidence.verdict for m in matches}
            own = refs[source].name if source >= 0 else None
            if own is not None:
                found.setdefault(family, []).append(names.get(own) in ("near", "exact"))
            wrong.setdefault(family, []).append(any(n != own for n in names))
    print(f"{len(refs)} indexed photos, {len(queries)} checks; p50 {1000 * np.median(times):.0f} ms, "
          f"p99 {1000 * np.percentile(times, 99):.0f} ms\n")
    print("| family | source judged near | checks with another photo near or similar |")
    print("|---|---|---|")
    for family in found:
        print(f"| {family} | {np.mean(found[family]):.2f} | {np.mean(wrong[family]):.3f} |")
    every = [x for v in found.values() for x in v]
    print(f"| all | {np.mean(every):.3f} | {np.mean([x for v in wrong.values() for x in v]):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--model", action="append", default=[], help="checkpoint(s) to evaluate")
    parser.add_argument("--random-arch", default="vitt14", help="architecture of the random-init baseline")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--poolings", default="cls+gem", help="comma-separated: cls,gem,cls+gem")
    parser.add_argument("--mirror", action="store_true", help="also evaluate mirror-invariant descriptors")
    parser.add_argument("--tiers", type=int, default=40,
                        help="held-out photos whose copies and re-shots measure the duplicate tiers (0: skip)")
    parser.add_argument("--tiers-only", action="store_true", help="measure the duplicate tiers only")
    parser.add_argument("--product", action="store_true",
                        help="measure search as the product serves it: descriptor order and verified (no other methods)")
    parser.add_argument("--verify-top", type=int, default=40,
                        help="with --product: descriptor candidates verified (the product's default)")
    parser.add_argument("--families", help="with --product or --checks: comma-separated edit families (default all)")
    parser.add_argument("--verified-only", action="store_true", help="with --product: skip the descriptor order")
    parser.add_argument("--checks", action="store_true",
                        help="measure duplicate checks as the product serves them (families as --product)")
    args = parser.parse_args()
    if args.checks:
        check_report(args)
        return
    if args.product:
        product_report(args)
        return
    if args.tiers_only:
        split = held_out(args.photos)
        vit = load_backbone(args.model[0] if args.model else None)
        tier_report(vit, [load_image(p) for p in split[:150]], [load_image(p) for p in split[150:]], args.tiers)
        return

    split = held_out(args.photos)
    if len(split) < 200:
        sys.exit(f"expected 200 held-out photos under {args.photos}, found {len(split)}")
    refs, distractors = split[:150], split[150:]
    refs_imgs = [load_image(p) for p in refs]
    queries = build_queries(refs, distractors)
    query_imgs = [q[1] for q in queries]
    print(f"{len(refs)} indexed photos, {len(queries)} queries "
          f"({sum(q[2] >= 0 for q in queries)} edited copies, {sum(q[2] < 0 for q in queries)} distractors), "
          f"{len(FAMILIES)} edit families, image size {args.image_size}")

    methods: dict[str, np.ndarray] = {"phash-64": phash_similarity(refs_imgs, query_imgs)}
    thresholds: dict[str, float] = {}
    torch.manual_seed(0)
    rand = build_vit(arch_by_name(args.random_arch)).eval()
    poolings = args.poolings.split(",")
    methods[f"random-init {args.random_arch}"] = model_similarity(rand, refs_imgs, query_imgs, args.image_size, poolings[0])
    models = args.model or ([None] if DEFAULT_CHECKPOINT.is_file() else [])
    for ckpt in models:
        vit = load_backbone(ckpt)
        name = Path(vit.checkpoint_path).name
        for pooling in poolings:
            methods[f"{name} [{pooling}]"] = model_similarity(vit, refs_imgs, query_imgs, args.image_size, pooling)
            if args.mirror:
                methods[f"{name} [{pooling}, mirror-invariant]"] = model_similarity(
                    vit, refs_imgs, query_imgs, args.image_size, pooling, mirror=True)
        recorded = vit.embed_defaults
        if "near_threshold" in recorded:  # the setting the model was shipped with
            mirror = ", mirror-invariant" if recorded.get("mirror_invariant") else ""
            key = f"{name} [{recorded.get('pooling', 'cls+gem')}{mirror}]"
            if key in methods:
                thresholds[key] = float(recorded["near_threshold"])

    results = {name: evaluate(sim, queries, thresholds.get(name)) for name, sim in methods.items()}
    print("\n| method | recall@1 | recall@10 | mild r@1 | strong r@1 | µAP |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['recall@1']:.3f} | {r['recall@10']:.3f} | {r['mild@1']:.3f} | {r['strong@1']:.3f} | {r['uAP']:.3f} |")
    print("\nrecall@1 / recall@10 per edit family:\n")
    print("| family | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for fam in FAMILIES:
        tag = "strong" if fam in STRONG else "mild"
        cells = [f"{r['families'][fam][0]:.2f} / {r['families'][fam][1]:.2f}" for r in results.values()]
        print(f"| {fam} ({tag}) | " + " | ".join(cells) + " |")
    print("\ncopy-detection average precision per edit family (its copies and its distractor queries):\n")
    print("| family | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for fam in FAMILIES:
        tag = "strong" if fam in STRONG else "mild"
        print(f"| {fam} ({tag}) | " + " | ".join(f"{r['family_ap'][fam]:.3f}" for r in results.values()) + " |")
    print("\nthresholds on the top-1 score (lowest one reaching each precision; recall of edited copies there):\n")
    print("| method | " + " | ".join(f"precision ≥ {t}" for t in (0.9, 0.95, 0.99)) + " |")
    print("|---|---|---|---|")
    for name, r in results.items():
        cells = []
        for t in (0.9, 0.95, 0.99):
            op = r["operating_points"].get(t)
            cells.append(f"t={op[0]:.3f} (P {op[1]:.3f}, R {op[2]:.3f})" if op else "unreachable")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\ncopy-detection µAP with score normalisation (top-1 minus beta x mean of the next 10 neighbours):\n")
    print("| method | raw | beta 0.5 | beta 1.0 |")
    print("|---|---|---|---|")
    for name, sim in methods.items():
        print(f"| {name} | {results[name]['uAP']:.3f} | {normalized_ap(sim, queries, beta=0.5):.3f} | "
              f"{normalized_ap(sim, queries, beta=1.0):.3f} |")
    shipped = [name for name in thresholds if name in methods]
    if shipped:  # the model's own setting: re-score its top-1 matches with each piece of evidence
        fused_report(load_backbone(models[0]), refs_imgs, queries, methods[shipped[0]])
    if args.tiers:
        vit = load_backbone(models[0]) if models else None
        if vit is not None:
            tier_report(vit, refs_imgs, [load_image(p) for p in distractors], args.tiers)
    for name, r in results.items():
        if "at_threshold" in r:
            t, precision, recall = r["at_threshold"]
            print(f"\n{name}: its recorded near-duplicate threshold {t:.3f} gives precision {precision:.3f}, "
                  f"recall {recall:.3f}")


def product_report(args) -> None:
    """recall@1 / µAP of the product's search, descriptor order against verified, side by side."""
    split = held_out(args.photos)
    refs, distractors = split[:150], split[150:]
    queries = build_queries(refs, distractors)
    if args.families:
        wanted = args.families.split(",")
        queries = [q for q in queries if q[0] in wanted]
    print(f"{len(refs)} indexed photos, {len(queries)} queries, verify_top {args.verify_top}")
    results, latency = {}, {}
    modes = (("verified", True),) if args.verified_only else (("descriptor order", False), ("verified", True))
    for name, verify in modes:
        sim, times = product_similarity(refs, queries, verify, args.verify_top)
        results[name] = evaluate(sim, queries)
        latency[name] = (1000 * float(np.median(times)), 1000 * float(np.percentile(times, 99)))
    families = sorted({q[0] for q in queries}, key=list(FAMILIES).index)
    print("\n| search | recall@1 | recall@10 | mild r@1 | strong r@1 | µAP | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['recall@1']:.3f} | {r['recall@10']:.3f} | {r['mild@1']:.3f} | {r['strong@1']:.3f} | "
              f"{r['uAP']:.3f} | {latency[name][0]:.0f} | {latency[name][1]:.0f} |")
    print("\n| family | " + " | ".join(f"{n} r@1 / r@10 / AP" for n in results) + " |")
    print("|---|" + "---|" * len(results))
    for fam in families:
        tag = "strong" if fam in STRONG else "mild"
        cells = [f"{r['families'][fam][0]:.2f} / {r['families'][fam][1]:.2f} / {r['family_ap'][fam]:.3f}"
                 for r in results.values()]
        print(f"| {fam} ({tag}) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
