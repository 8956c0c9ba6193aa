"""Embedding throughput on this CPU: our ViT-S/14 vs transformers' Dinov2Model with identical weights.

Prints images/s at 224 px for batch 1, 8 and 32, with ours and the reference timed alternately
in one process (medians over repeats), the int8 dynamic-quantisation fast path and its cosine to
fp32 on real photos, and end-to-end images/s from JPEG files (decode + preprocess + forward)
with and without Pillow's draft mode.

    .venv/bin/python bench/embed_throughput.py [--photos ../shared/data/photos-1k] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Embedder, load_image  # noqa: E402
from model.checkpoint import backbone_from_object  # noqa: E402
from model.embedder import quantize_int8  # noqa: E402


def reference_vits14():
    """transformers' ViT-S/14 (non-register), its own random init with LayerScale 1.0 so that every
    residual branch carries weight (at DINOv2's 1e-5 init the blocks are nearly the identity and
    int8 fidelity would be trivially perfect)."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536,
                       image_size=518, patch_size=14, layerscale_value=1.0)
    return Dinov2Model(cfg).eval()


def time_forward(fn, batch: torch.Tensor, min_seconds: float = 1.0) -> float:
    """images/s of ``fn(batch)`` over at least ``min_seconds`` after one warm-up call."""
    with torch.inference_mode():
        fn(batch)
        n, start = 0, time.perf_counter()
        while True:
            fn(batch)
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                return n * batch.shape[0] / elapsed


def forward_throughput(ours, ours_int8, hf, repeats: int) -> None:
    print(f"\n## forward, ViT-S/14 at 224x224, fp32 vs transformers {__import__('transformers').__version__}, "
          f"{torch.get_num_threads()} threads, median of {repeats} alternating runs")
    print("| batch | ours img/s | transformers img/s | ours/transformers | ours int8 img/s | int8/ours fp32 | int8/transformers |")
    print("|---|---|---|---|---|---|---|")
    for bs in (1, 8, 32):
        x = torch.randn(bs, 3, 224, 224)
        runs = {"ours": [], "hf": [], "int8": []}
        for _ in range(repeats):
            runs["ours"].append(time_forward(ours.forward_features, x))
            runs["hf"].append(time_forward(lambda t: hf(pixel_values=t), x))
            runs["int8"].append(time_forward(ours_int8.forward_features, x))
        o, h, q = (statistics.median(runs[k]) for k in ("ours", "hf", "int8"))
        print(f"| {bs} | {o:.1f} | {h:.1f} | {o / h:.2f} | {q:.1f} | {q / o:.2f} | {q / h:.2f} |")


def int8_fidelity(ours, photos: list[Path]) -> None:
    fp32 = Embedder(ours, device="cpu").embed_paths(photos)
    int8 = Embedder(ours, device="cpu", quantize=True).embed_paths(photos)
    cos = (fp32.vectors * int8.vectors).sum(1)
    print(f"\n## int8 vs fp32 global descriptors (cls+gem) on {len(cos)} real photos: "
          f"cosine min {cos.min():.4f}, mean {cos.mean():.4f}")


def files_throughput(ours, photos: list[Path], repeats: int) -> None:
    print("\n## from JPEG files on disk (decode + preprocess + forward), batch 32, 2 decode threads")
    with tempfile.TemporaryDirectory() as tmp:
        large = []
        for p in photos[:64]:
            img = load_image(p)
            dst = Path(tmp) / p.name
            img.resize((img.width * 4, img.height * 4)).save(dst, quality=90)
            large.append(dst)
        sets = {f"{len(photos)} photos-1k JPEGs (<=384 px)": photos, "64 large JPEGs (~1536 px)": large}
        print("| files | draft fp32 img/s | no-draft fp32 img/s | draft int8 img/s |")
        print("|---|---|---|---|")
        for label, paths in sets.items():
            fp32 = Embedder(ours, device="cpu")
            int8 = Embedder(ours, device="cpu", quantize=True)
            runs = {"draft": [], "full": [], "int8": []}
            for _ in range(repeats):
                for key, emb, draft in (("draft", fp32, True), ("full", fp32, False), ("int8", int8, True)):
                    emb.draft = draft
                    start = time.perf_counter()
                    out = emb.embed_paths(paths)
                    runs[key].append(len(out.paths) / (time.perf_counter() - start))
            d, f, q = (statistics.median(runs[k]) for k in ("draft", "full", "int8"))
            print(f"| {label} | {d:.1f} | {f:.1f} | {q:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/photos-1k")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--files", type=int, default=256, help="how many photos to use for the file benchmarks")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    hf = reference_vits14()
    ours = backbone_from_object(hf.state_dict(), num_heads=6)  # identical weights
    ours_int8 = quantize_int8(ours)
    forward_throughput(ours, ours_int8, hf, args.repeats)
    photos = sorted(args.photos.glob("*.jpg"))[: args.files]
    if not photos:
        print(f"\n(no photos under {args.photos}: skipping the file benchmarks)")
        return
    int8_fidelity(ours, photos)
    files_throughput(ours, photos, max(1, args.repeats // 2))


if __name__ == "__main__":
    main()
