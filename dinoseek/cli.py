"""The ``dinoseek`` command line.

Exit status 0 when the command did its job (per-file failures are reported, not fatal);
non-zero with a one-line message on stderr otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from dinoseek.settings import SettingsError, load_settings


class UsageError(Exception):
    """The command cannot do its job; the message is printed as one line on stderr."""


def _load_model(args: argparse.Namespace):
    from model import arch_by_name, build_vit, load_backbone

    if args.random_init:
        import torch

        torch.manual_seed(args.seed)
        vit = build_vit(arch_by_name(args.random_init)).eval()
        vit.checkpoint_path, vit.checkpoint_digest = f"random-init:{args.random_init}:seed={args.seed}", None
        return vit
    settings = load_settings()
    return load_backbone(args.model or settings.model, search_dirs=[settings.models_dir])


def _nearest_others(vectors: np.ndarray) -> list[tuple[int, float]]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    best = sims.argmax(axis=1)
    return [(int(j), float(sims[i, j])) for i, j in enumerate(best)]


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed image files and print their descriptors (and each image's nearest other image)."""
    from indexer.scan import iter_image_paths
    from model import Embedder

    try:
        paths = list(iter_image_paths(args.paths, follow_symlinks=args.follow_symlinks))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    if not paths:
        raise UsageError(f"no image files found under {', '.join(args.paths)}")
    vit = _load_model(args)
    device = args.device or load_settings().device
    embedder = Embedder(vit, device=device, image_size=args.image_size, pooling=args.pooling,
                        batch_size=args.batch_size, quantize=args.int8)
    out = embedder.embed_paths(paths)
    nearest = _nearest_others(out.vectors) if len(out.paths) > 1 else [(None, None)] * len(out.paths)
    if args.json:
        doc = {
            "model": {"path": vit.checkpoint_path, "digest": vit.checkpoint_digest, "arch": vit.arch.to_dict()},
            "dim": embedder.dim,
            "images": [
                {"path": p, "grid": list(g.shape[:2]), "vector": [round(float(x), 6) for x in v],
                 "nearest": {"path": out.paths[j], "score": round(s, 6)} if j is not None else None}
                for p, g, v, (j, s) in zip(out.paths, out.patches, out.vectors, nearest)
            ],
            "errors": out.errors,
        }
        json.dump(doc, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"model {vit.checkpoint_path} ({vit.arch.embed_dim}-d, {vit.arch.depth} blocks), "
              f"descriptor {embedder.dim}-d {args.pooling}")
        for p, g, v, (j, s) in zip(out.paths, out.patches, out.vectors, nearest):
            head = " ".join(f"{x:+.3f}" for x in v[:4])
            near = f"  nearest {out.paths[j]} ({s:.3f})" if j is not None else ""
            print(f"{p}  grid {g.shape[0]}x{g.shape[1]}  [{head} ...]{near}")
        for err in out.errors:
            print(f"failed: {err['error']}", file=sys.stderr)
        print(f"{len(out.paths)} embedded, {len(out.errors)} failed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dinoseek", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    embed = sub.add_parser("embed", help="embed image files and print their global descriptors")
    embed.add_argument("paths", nargs="+", help="image files or folders (walked recursively)")
    source = embed.add_mutually_exclusive_group()
    source.add_argument("--model", help="checkpoint path or name (default: DINOSEEK_MODEL, then the shipped model)")
    source.add_argument("--random-init", metavar="ARCH",
                        help="use randomly initialised weights of ARCH (e.g. vits14): a pipeline check only")
    embed.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    embed.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: DINOSEEK_DEVICE or auto")
    embed.add_argument("--image-size", type=int, default=224, help="long side fed to the model, in pixels")
    embed.add_argument("--pooling", choices=["cls", "gem", "cls+gem"], default="cls+gem")
    embed.add_argument("--batch-size", type=int, default=32)
    embed.add_argument("--int8", action="store_true", help="CPU fast path: int8 dynamic quantisation")
    embed.add_argument("--follow-symlinks", action="store_true")
    embed.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    embed.set_defaults(func=cmd_embed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from model import CheckpointError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, SettingsError, CheckpointError, ValueError) as exc:
        print(f"dinoseek {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
