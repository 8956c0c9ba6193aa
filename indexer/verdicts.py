"""Duplicate verdicts: is a pair of pictures an edited copy (``near``), another shot of the same
scene or object (``similar``), or neither, and on what evidence.

Evidence per pair: the learned descriptors' cosine, that cosine normalised against each picture's
background (its mean similarity to its 2nd-11th nearest images in the collection, so a picture
that resembles everything does not pass on resemblance alone), the perceptual hashes' agreement,
and geometric verification (indexer/verification.py). A logistic model fitted on labelled pairs
(bench/fit_verdicts.py, photos the benchmarks never use) turns them into one calibrated
probability that the pair is a copy (at least SAME_PICTURE_P where the hashes and the alignment
say one picture, ``_same_picture``); ``near`` is a probability of at least one half. A second
one, fitted on the cheap evidence, gives the probability that the two show the same scene or
object at all; a pair that is not a copy but is at least even odds related is ``similar``.

The fit is per backbone (stored by checkpoint digest in model/weights/verdicts.json): a model with
none falls back to its descriptor threshold alone (``near_threshold`` of the checkpoint).
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from indexer.verification import MIN_ALIGNING_INLIERS, Geometry
from model.checkpoint import DEFAULT_CHECKPOINT

CALIBRATION_FILE = DEFAULT_CHECKPOINT.parent / "verdicts.json"  # beside the shipped model, package data of `model`
BACKGROUND_RANKS = (1, 11)  # neighbours 2..11 (0 is the picture itself or its closest match)
# Used when the model records no threshold of its own (``dinoseek convert --near-threshold``); the
# shipped model records the one measured on bench/quality.py (docs/BENCHMARKS.md).
DEFAULT_NEAR_THRESHOLD = 0.90
FALLBACK_SLOPE = 20.0  # uncalibrated models: p = sigmoid(slope * (cosine - near threshold))
FALLBACK_SIMILAR_MARGIN = 0.15  # uncalibrated models: similar from near threshold - margin
# pHash similarity (at most 13 of 64 bits differ) that vouches for an UNTOLD pair: unrelated pairs average 0.5
UNTOLD_MIN_HASH = 0.8
# One picture (``_same_picture``): perceptual hashes this alike (at most 3 of 64 bits differ) and geometry
# that aligns the two with this share of agreeing blocks. Of the fit's 450 labelled pairs 29 are, all
# copies (other shots reach 0.94 at most); such a pair's copy probability is at least SAME_PICTURE_P,
# the share of copies among them (Laplace's rule: 30 / 31). docs/BENCHMARKS.md
SAME_PICTURE_HASH = 0.95
SAME_PICTURE_AGREEMENT = 0.8
SAME_PICTURE_P = 0.967


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _logistic(weights: list[float], values: list[float]) -> float:
    return _sigmoid(weights[0] + sum(w * x for w, x in zip(weights[1:], values)))


def _logistic_rows(weights: list[float], columns: list[np.ndarray]) -> np.ndarray:
    """``_logistic`` of many pairs at once: the same sums in the same order."""
    total = np.zeros(len(columns[0]))
    for w, x in zip(weights[1:], columns):
        total = total + w * x
    return 1.0 / (1.0 + np.exp(-np.clip(weights[0] + total, -60.0, 60.0)))


@dataclass
class PairEvidence:
    """Everything known about one pair; ``copy_probability`` and ``verdict`` are filled by a Calibration."""

    descriptor: float
    normalised: float | None = None
    hash: float | None = None
    geometry: Geometry | None = None
    copy_probability: float | None = None
    verdict: str | None = None

    def to_json(self) -> dict:
        out = {"descriptor": round(self.descriptor, 6),
               "normalised": None if self.normalised is None else round(self.normalised, 6),
               "hash": None if self.hash is None else round(self.hash, 6),
               "geometry": None if self.geometry is None else self.geometry.to_json(),
               "copy_probability": None if self.copy_probability is None else round(self.copy_probability, 6)}
        if self.verdict is not None:
            out["verdict"] = self.verdict
        return out


FEATURES_CHEAP = ("descriptor", "normalised", "hash")
FEATURES_FULL = FEATURES_CHEAP + ("inlier_share", "coverage", "agreement")


# each model input of a pair: a missing hash counts as unrelated pictures' typical 0.5, a missing
# normalisation as the raw cosine, missing geometry as none found
FEATURE_VALUES = {
    "descriptor": lambda e: e.descriptor,
    "normalised": lambda e: e.descriptor if e.normalised is None else e.normalised,
    "hash": lambda e: 0.5 if e.hash is None else e.hash,
    "inlier_share": lambda e: e.geometry.inlier_share if e.geometry else 0.0,
    "coverage": lambda e: e.geometry.coverage if e.geometry else 0.0,
    "agreement": lambda e: e.geometry.agreement if e.geometry else 0.0,
}


def features(evidence: PairEvidence, names: tuple[str, ...]) -> list[float]:
    """The model inputs of a pair (FEATURE_VALUES)."""
    return [FEATURE_VALUES[n](evidence) for n in names]


def feature_columns(evidence: list[PairEvidence], names: tuple[str, ...]) -> list[np.ndarray]:
    """``features`` of many pairs, one array per feature."""
    return [np.fromiter(map(FEATURE_VALUES[n], evidence), dtype=np.float64, count=len(evidence)) for n in names]


@dataclass
class Calibration:
    """Fitted verdict model of one backbone, logistic weights (bias first) for two questions, each
    on the full evidence (geometry included) and on the cheap evidence alone: is the pair a copy
    (``full``, ``cheap``), and do the pictures show the same scene at all (``related_full``,
    ``related``: copies and other shots against unrelated pairs; without them the cosine's
    ``similar_threshold`` decides). Geometry is computed where either cheap probability falls in
    ``verify_band``: there it can change the verdict."""

    cheap: list[float]  # P(copy) on the cheap evidence
    full: list[float] | None  # P(copy) on the full evidence, geometry included
    similar_threshold: float
    candidate_floor: float
    related: list[float] | None = None  # P(same scene: a copy or another shot) on the cheap evidence
    related_full: list[float] | None = None  # the same on the full evidence
    verify_band: tuple[float, float] = (0.02, 0.98)
    beta: float = 1.0
    source: str = "fitted"
    extra: dict = field(default_factory=dict)

    @classmethod
    def fallback(cls, near_threshold: float) -> Calibration:
        """No fit for this backbone: the descriptor threshold decides, geometry is reported only."""
        slope = FALLBACK_SLOPE
        return cls(cheap=[-slope * near_threshold, slope, 0.0, 0.0], full=None,
                   similar_threshold=near_threshold - FALLBACK_SIMILAR_MARGIN,
                   candidate_floor=near_threshold - FALLBACK_SIMILAR_MARGIN, verify_band=(0.0, 0.0),
                   beta=0.0, source="descriptor threshold (no verdict calibration for this model)")

    def to_json(self) -> dict:
        return {"cheap": self.cheap, "full": self.full, "related": self.related, "related_full": self.related_full,
                "similar_threshold": self.similar_threshold,
                "candidate_floor": self.candidate_floor, "verify_band": list(self.verify_band), "beta": self.beta,
                **self.extra}

    @classmethod
    def from_json(cls, doc: dict) -> Calibration:
        known = {"cheap", "full", "related", "related_full", "similar_threshold", "candidate_floor", "verify_band", "beta"}
        return cls(cheap=list(doc["cheap"]), full=list(doc["full"]) if doc.get("full") else None,
                   related=list(doc["related"]) if doc.get("related") else None,
                   related_full=list(doc["related_full"]) if doc.get("related_full") else None,
                   similar_threshold=float(doc["similar_threshold"]), candidate_floor=float(doc["candidate_floor"]),
                   verify_band=tuple(doc.get("verify_band", (0.02, 0.98))), beta=float(doc.get("beta", 1.0)),
                   extra={k: v for k, v in doc.items() if k not in known})

    # ------------------------------------------------------------------ scoring
    def cheap_probability(self, evidence: PairEvidence) -> float:
        return _logistic(self.cheap, features(evidence, FEATURES_CHEAP))

    def related_probability(self, evidence: PairEvidence) -> float | None:
        """How likely the two pictures show one scene or object (copies included); None unfitted."""
        if _told(evidence) and self.related_full is not None:
            return _logistic(self.related_full, features(evidence, FEATURES_FULL))
        return None if self.related is None else _logistic(self.related, features(evidence, FEATURES_CHEAP))

    def wants_geometry(self, evidence: PairEvidence) -> bool:
        """Whether verification could change this pair's verdict (a cheap probability in the band)."""
        return bool(self.wants_geometry_of([evidence])[0])

    def judge(self, evidence: PairEvidence) -> PairEvidence:
        """Fill the pair's copy probability and verdict (``near``, ``similar`` or None). A pair
        whose geometry is no evidence (``_untold``) is a copy on the cheap evidence or nothing:
        resemblance alone is not another shot of a scene."""
        if _told(evidence) and self.full is not None:
            p = _logistic(self.full, features(evidence, FEATURES_FULL))
        else:
            p = self.cheap_probability(evidence)
        if self.full is not None and _same_picture(evidence):  # (an expert's cosine threshold decides alone)
            p = max(p, SAME_PICTURE_P)
        evidence.copy_probability = p
        related = self.related_probability(evidence)
        if p >= 0.5:
            evidence.verdict = "near"
        elif _untold(evidence):
            evidence.verdict = None
        elif related >= 0.5 if related is not None else evidence.descriptor >= self.similar_threshold:
            evidence.verdict = "similar"
        else:
            evidence.verdict = None
        return evidence

    # ------------------------------------------------------------------ many pairs at once (a scan judges millions)
    def wants_geometry_of(self, evidence: list[PairEvidence]) -> np.ndarray:
        """Whether verification could change each pair's verdict: its cheap copy or related
        probability in the verify band (never without a model that weighs geometry)."""
        if self.full is None or not evidence:
            return np.zeros(len(evidence), dtype=bool)
        low, high = self.verify_band
        cheap = feature_columns(evidence, FEATURES_CHEAP)
        p = _logistic_rows(self.cheap, cheap)
        wants = (low <= p) & (p <= high)
        if self.related is not None:
            related = _logistic_rows(self.related, cheap)
            wants |= (low <= related) & (related <= high)
        return wants

    def cheap_probabilities(self, evidence: list[PairEvidence]) -> np.ndarray:
        """``cheap_probability`` of each pair."""
        return _logistic_rows(self.cheap, feature_columns(evidence, FEATURES_CHEAP)) if evidence else np.zeros(0)

    def judge_all(self, evidence: list[PairEvidence]) -> None:
        """``judge`` every pair in place (the same probabilities and verdicts, computed per array)."""
        if not evidence:
            return
        cheap = feature_columns(evidence, FEATURES_CHEAP)
        untold = np.array([_untold(e) for e in evidence])
        geometry = np.array([e.geometry is not None for e in evidence]) & ~untold  # ``_told``, from ``untold``
        full = feature_columns(evidence, FEATURES_FULL) if geometry.any() else None
        p = _logistic_rows(self.cheap, cheap)
        if self.full is not None and full is not None:
            p = np.where(geometry, _logistic_rows(self.full, full), p)
        if self.full is not None:
            same = np.array([_same_picture(e) for e in evidence])
            p = np.where(same, np.maximum(p, SAME_PICTURE_P), p)
        related = np.full(len(evidence), np.nan)
        if self.related is not None:
            related = _logistic_rows(self.related, cheap)
        if self.related_full is not None and full is not None:
            related = np.where(geometry, _logistic_rows(self.related_full, full), related)
        descriptor = cheap[0]
        similar = np.where(np.isnan(related), descriptor >= self.similar_threshold, related >= 0.5) & ~untold
        verdicts = np.where(p >= 0.5, "near", np.where(similar, "similar", ""))
        for e, probability, verdict in zip(evidence, p.tolist(), verdicts.tolist()):
            e.copy_probability = probability
            e.verdict = verdict or None


def _told(evidence: PairEvidence) -> bool:
    """Whether the pair has geometry that is evidence (``_untold`` is not)."""
    return evidence.geometry is not None and not _untold(evidence)


def _same_picture(evidence: PairEvidence) -> bool:
    """Whether the pHashes say one picture (SAME_PICTURE_HASH) and verification aligns the two
    (SAME_PICTURE_AGREEMENT): a copy whose blur or re-encoding left too few matching keypoints
    for the inlier share to vouch for it."""
    geometry = evidence.geometry
    return (geometry is not None and geometry.telling and geometry.inliers >= MIN_ALIGNING_INLIERS
            and geometry.agreement >= SAME_PICTURE_AGREEMENT and (evidence.hash or 0.0) >= SAME_PICTURE_HASH)


def _untold(evidence: PairEvidence) -> bool:
    """Whether the pair's geometry is no evidence: a picture too poor in keypoints for any (UNTOLD)
    and perceptual hashes saying one picture (UNTOLD_MIN_HASH: a thumbnail or a blurred copy
    keeps its hash). Elsewhere the geometry found, none, is taken as it is: without it the cheap
    model is no judge (it calls unrelated thumbnails copies)."""
    geometry = evidence.geometry
    return geometry is not None and not geometry.telling and (evidence.hash or 0.0) >= UNTOLD_MIN_HASH


@functools.lru_cache(maxsize=4)
def load_calibrations(path: Path = CALIBRATION_FILE) -> dict[str, dict]:
    """Every fitted calibration, by checkpoint digest (empty when the file is absent); read once a
    process, not on every duplicate check. Callers must not change the answer."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def model_near_threshold(vit) -> float:
    """The backbone's recorded near-duplicate cosine threshold, else DEFAULT_NEAR_THRESHOLD."""
    return float(getattr(vit, "embed_defaults", {}).get("near_threshold", DEFAULT_NEAR_THRESHOLD))


def calibration_for(vit, near_threshold: float) -> Calibration:
    """The fitted calibration of the backbone, else the fallback on its descriptor threshold."""
    digest = getattr(vit, "checkpoint_digest", None)
    doc = load_calibrations().get(digest or "")
    return Calibration.from_json(doc) if doc else Calibration.fallback(near_threshold)


def background_mean(sorted_scores, ranks: tuple[int, int] = BACKGROUND_RANKS) -> float | None:
    """Mean similarity to the neighbours at ``ranks`` of a best-first score list (None if too short)."""
    window = [float(s) for s in list(sorted_scores)[ranks[0]:ranks[1]]]
    return sum(window) / len(window) if window else None


def normalise(descriptor: float, backgrounds: list[float | None], beta: float) -> float | None:
    """The cosine minus beta times the mean background of the pair's pictures that have one."""
    known = [b for b in backgrounds if b is not None]
    return descriptor - beta * sum(known) / len(known) if known else None
