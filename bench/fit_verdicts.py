"""Fit the duplicate-verdict model of a backbone and store it in model/weights/verdicts.json.

Photos: the training split of ``photos-1k`` (index % 5 != 0 in name order), never the held-out
photos bench/quality.py measures on. Labelled pairs against 300 indexed photos:
  - copy: a random chain of 1-3 of the training edits (model/train/copy_augment.py: crops,
    rotation, perspective, noise, JPEG, text, stickers, padding, screenshot frames, colour, mirror);
  - other shot: the photo re-shot, half with subject motion (other framing, zoom, tilt, a smooth
    displacement, exposure) and half from a camera moved sideways (disparity from a random depth
    map); drawn with other ranges and models than bench/edits.py's ``reshoot`` functions;
  - unrelated: an edited copy of a photo that is not indexed, paired with its nearest indexed photo.
Logistic models (maximum likelihood, L2 1e-2, every weight but the raw cosine's kept >= 0) of
"is a copy" (copies against other shots and unrelated pairs) and of "shows the same scene"
(copies and other shots against unrelated pairs), each on the full evidence, geometric
verification included, and on the cheap evidence alone (descriptor, normalised descriptor, hash)
for pairs that are not verified. The similar threshold kept for
reference is the lowest descriptor cosine at which other shots outnumber unrelated pairs 9 to 1.
The pairs' evidence is cached (--cache), so a refit does not recompute it.

    .venv/bin/python bench/fit_verdicts.py [--model CKPT] [--pairs 150] [--cache /tmp/verdict-pairs.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from edits import reframed  # noqa: E402
from pairs import Pair, nearest_refs, pair_evidence  # noqa: E402

from indexer.verdicts import (  # noqa: E402
    CALIBRATION_FILE,
    FEATURES_CHEAP,
    FEATURES_FULL,
    Calibration,
    PairEvidence,
    features,
)
from indexer.verification import Geometry  # noqa: E402
from model import Embedder, load_backbone, load_image  # noqa: E402
from model.train import copy_augment as edits  # noqa: E402
from model.train.augment import color_jitter  # noqa: E402

PHOTOS = ROOT.parent / "shared/data/photos-1k"


def training_copy(img: Image.Image, rng: random.Random) -> Image.Image:
    """1-3 training edits in random order, at the photo's own size (no square resize)."""
    chain = [lambda i: edits.crop(i, rng), lambda i: edits.rotate(i, rng), lambda i: edits.perspective(i, rng),
             lambda i: edits.add_noise(i, rng), lambda i: edits.jpeg(i, rng), lambda i: edits.text_overlay(i, rng),
             lambda i: edits.sticker_overlay(i, rng), lambda i: edits.pad(i, rng),
             lambda i: edits.screenshot_frame(i, rng), lambda i: color_jitter(i, rng, 0.4, 0.4, 0.4, 0.05),
             ImageOps.mirror, lambda i: i.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))]
    for edit in rng.sample(chain, rng.randint(1, 3)):
        img = edit(img)
    return img.convert("RGB")


def retake(img: Image.Image, rng: random.Random) -> Image.Image:
    """Another shot: a shifted, zoomed, tilted framing, a smooth local motion and a new exposure."""
    arr = np.asarray(reframed(img, rng, (0.7, 0.95), 4, Image.Resampling.BILINEAR), np.float32)
    rows, cols = arr.shape[:2]
    g = np.random.default_rng(rng.getrandbits(32))
    amplitude = rng.uniform(0.02, 0.07) * max(rows, cols)
    # a sum of a few random sinusoids: smooth motion of parts of the scene
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    dy = np.zeros_like(yy)
    dx = np.zeros_like(xx)
    for _ in range(3):
        fy, fx, py, px = g.uniform(0.5, 2.0), g.uniform(0.5, 2.0), g.uniform(0, 6.3), g.uniform(0, 6.3)
        dy += np.sin(2 * np.pi * fx * xx / cols + px) * amplitude / 3
        dx += np.sin(2 * np.pi * fy * yy / rows + py) * amplitude / 3
    sy = np.clip(yy + dy, 0, rows - 1).astype(int)
    sx = np.clip(xx + dx, 0, cols - 1).astype(int)
    out = Image.fromarray(arr[sy, sx].astype(np.uint8))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    return ImageEnhance.Color(out).enhance(rng.uniform(0.8, 1.2))


def parallax_retake(img: Image.Image, rng: random.Random) -> Image.Image:
    """Another shot from a camera moved sideways: a smooth random depth map, disparity up to
    1.5-6% of the width (and a little vertical), a new framing, exposure and sensor noise."""
    arr = np.asarray(img, np.float32)
    rows, cols = arr.shape[:2]
    g = np.random.default_rng(rng.getrandbits(32))
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float32)
    depth = np.zeros_like(xx)
    for _ in range(4):  # a few soft blobs at random depths
        cy, cx, r = g.uniform(0, rows), g.uniform(0, cols), g.uniform(0.2, 0.5) * max(rows, cols)
        depth += g.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    depth /= max(1e-6, depth.max())
    sx = np.clip(xx + rng.uniform(0.015, 0.06) * cols * depth, 0, cols - 1).astype(int)
    sy = np.clip(yy + rng.uniform(-0.01, 0.01) * rows * depth, 0, rows - 1).astype(int)
    out = arr[sy, sx] + g.normal(0, rng.uniform(1, 4), arr.shape)
    out = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
    m = rng.uniform(0.01, 0.08)
    out = out.crop((int(cols * m), int(rows * m * rng.random()), cols - int(cols * m * rng.random()), rows - int(rows * m)))
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))


def fit_logistic(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], l2: float = 1e-2) -> np.ndarray:
    """Weights (bias first) of a logistic model, maximum likelihood with an L2 penalty. Every
    piece of evidence may only raise the probability (weight >= 0), except the raw cosine, which
    may trade off against the normalised one (their difference is the background's weight):
    a fit on synthetic pairs must not learn that, say, a pHash agreeing more means less of a copy."""
    from scipy.optimize import minimize

    design = np.hstack([np.ones((len(x), 1)), x])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ w
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        nll = np.sum(np.logaddexp(0, z) - y * z) + 0.5 * l2 * np.sum(w[1:] ** 2)
        grad = design.T @ (p - y) + l2 * np.r_[0.0, w[1:]]
        return float(nll), grad

    bounds = [(None, None)] + [(None, None) if n == "descriptor" else (0.0, None) for n in names]
    return minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B", bounds=bounds).x


def similar_threshold(descriptors: np.ndarray, is_other_shot: np.ndarray, precision: float = 0.9) -> float:
    """The lowest cosine at which other shots make up ``precision`` of the non-copies above it."""
    order = np.argsort(-descriptors)
    hits = is_other_shot[order].astype(float)
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    ok = np.flatnonzero(prec >= precision)
    return float(descriptors[order][ok[-1]]) if len(ok) else float(descriptors.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=PHOTOS)
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--pairs", type=int, default=200, help="indexed photos that get a copy and a re-shot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--cache", type=Path, help="JSON file of the pairs' evidence (read if present, else written)")
    args = parser.parse_args()
    started = time.time()
    vit = load_backbone(args.model)
    if args.cache and args.cache.exists():
        cached = json.loads(args.cache.read_text())
        labels = cached["labels"]
        evidence = [evidence_from_json(e) for e in cached["evidence"]]
    else:
        labels, evidence = collect(args, vit)
        if args.cache:
            args.cache.write_text(json.dumps({"labels": labels, "evidence": [e.to_json() for e in evidence]}))
    fit(args, vit, labels, evidence, started)


def evidence_from_json(doc: dict) -> PairEvidence:
    g = doc.get("geometry")
    geometry = Geometry(g["matches"], g["inliers"], g["inlier_share"], g["coverage"], g["mirrored"],
                        g["agreement"]) if g else None
    return PairEvidence(doc["descriptor"], doc["normalised"], doc["hash"], geometry)


def collect(args, vit) -> tuple[list[str], list[PairEvidence]]:
    """Labelled pairs of the training split and their evidence."""
    rng = random.Random(args.seed)
    train = [p for i, p in enumerate(sorted(args.photos.glob("*.jpg"))) if i % 5 != 0]
    rng.shuffle(train)
    refs = [load_image(p) for p in train[:300]]
    outsiders = [load_image(p) for p in train[300:300 + args.pairs]]
    embedder = Embedder(vit, device="cpu")
    pairs = []
    for i in range(args.pairs):
        pairs.append(Pair("copy", "training edits", training_copy(refs[i], random.Random(f"c{args.seed}-{i}")), i))
        other = retake if i % 2 else parallax_retake
        pairs.append(Pair("other shot", other.__name__, other(refs[i], random.Random(f"r{args.seed}-{i}")), i))
    unrelated = [training_copy(img, random.Random(f"u{args.seed}-{j}")) for j, img in enumerate(outsiders)]
    ref_vectors = embedder.embed(refs).vectors
    for picture, r in zip(unrelated, nearest_refs(embedder, ref_vectors, unrelated)):
        pairs.append(Pair("unrelated", "nearest photo", picture, r))
    return [p.label for p in pairs], pair_evidence(embedder, refs, pairs, beta=1.0)


def fit(args, vit, labels: list[str], evidence: list[PairEvidence], started: float) -> None:
    labels = np.array(labels)
    y = (labels == "copy").astype(float)
    cheap = fit_logistic(np.array([features(e, FEATURES_CHEAP) for e in evidence]), y, FEATURES_CHEAP)
    full = fit_logistic(np.array([features(e, FEATURES_FULL) for e in evidence]), y, FEATURES_FULL)
    same_scene = (labels != "unrelated").astype(float)
    related = fit_logistic(np.array([features(e, FEATURES_CHEAP) for e in evidence]), same_scene, FEATURES_CHEAP)
    related_full = fit_logistic(np.array([features(e, FEATURES_FULL) for e in evidence]), same_scene, FEATURES_FULL)
    non_copy = labels != "copy"
    desc = np.array([e.descriptor for e in evidence])
    other = labels == "other shot"
    similar = similar_threshold(desc[non_copy], other[non_copy])
    floor = float(min(similar, np.quantile(desc[y == 1], 0.05)))
    calibration = Calibration(cheap=[round(float(v), 6) for v in cheap], full=[round(float(v), 6) for v in full],
                              related=[round(float(v), 6) for v in related],
                              related_full=[round(float(v), 6) for v in related_full],
                              similar_threshold=round(similar, 4), candidate_floor=round(max(0.0, floor), 4),
                              extra={"fitted_on": f"{len(labels)} pairs of photos-1k's training split, seed {args.seed}",
                                     "command": "bench/fit_verdicts.py", "features_cheap": list(FEATURES_CHEAP),
                                     "features_full": list(FEATURES_FULL)})
    for e in evidence:
        calibration.judge(e)
    for label in ("copy", "other shot", "unrelated"):
        m = labels == label
        verdicts = [evidence[k].verdict for k in np.flatnonzero(m)]
        print(f"{label:11s} n={m.sum():3d}  near {verdicts.count('near') / m.sum():.3f}  "
              f"similar {verdicts.count('similar') / m.sum():.3f}  none {verdicts.count(None) / m.sum():.3f}")
    doc = json.loads(args.out.read_text()) if args.out.exists() else {}
    doc[vit.checkpoint_digest] = calibration.to_json()
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"cheap {calibration.cheap}\nfull {calibration.full}\nrelated {calibration.related}\n"
          f"related_full {calibration.related_full}")
    print(f"similar threshold {calibration.similar_threshold} "
          f"candidate floor {calibration.candidate_floor}\nwrote {args.out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
