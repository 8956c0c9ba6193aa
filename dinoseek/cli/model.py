"""CLI commands of the model itself: ``embed``, ``train``, ``convert``."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from dinoseek.cli.errors import UsageError
from dinoseek.cli.output import emit_json
from dinoseek.settings import Settings, SettingsError, load_settings, parse_device
from model import Embedder, arch_by_name, build_vit, load_backbone, save_checkpoint
from model.checkpoint import read_train_record, resolve_checkpoint
from model.files import iter_image_paths
from model.train.config import preset
from model.train.trainer import Trainer


def _load_model(args: argparse.Namespace, settings: Settings):
    """The backbone named by --random-init, --model, DINOSEEK_MODEL or the shipped default, in that order."""
    if args.random_init:
        torch.manual_seed(args.seed)
        vit = build_vit(arch_by_name(args.random_init)).eval()
        vit.checkpoint_path, vit.checkpoint_digest = f"random-init:{args.random_init}:seed={args.seed}", None
        return vit
    return load_backbone(args.model or settings.model, search_dirs=[settings.models_dir])


def _nearest_others(vectors: np.ndarray) -> list[tuple[int, float]]:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    best = sims.argmax(axis=1)
    return [(int(j), float(sims[i, j])) for i, j in enumerate(best)]


def cmd_embed(args: argparse.Namespace) -> int:
    """Embed image files and print their descriptors (and each image's nearest other image)."""
    try:
        paths = list(iter_image_paths(args.paths, follow_symlinks=args.follow_symlinks))
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from exc
    if not paths:
        raise UsageError(f"no image files found under {', '.join(args.paths)}")
    settings = load_settings()
    vit = _load_model(args, settings)
    device = args.device or settings.device
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
        emit_json(doc)
    else:
        print(f"model {vit.checkpoint_path} ({vit.arch.embed_dim}-d, {vit.arch.depth} blocks), "
              f"descriptor {embedder.dim}-d {embedder.pooling} at {embedder.image_size} px")
        for p, g, v, (j, s) in zip(out.paths, out.patches, out.vectors, nearest):
            head = " ".join(f"{x:+.3f}" for x in v[:4])
            near = f"  nearest {out.paths[j]} ({s:.3f})" if j is not None else ""
            print(f"{p}  grid {g.shape[0]}x{g.shape[1]}  [{head} ...]{near}")
        for err in out.errors:
            print(f"failed: {err['error']}", file=sys.stderr)
        print(f"{len(out.paths)} embedded, {len(out.errors)} failed")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Self-supervised training (or fine-tuning with --from) on a folder of unlabeled images."""
    settings = load_settings()
    cfg = preset(args.preset).with_overrides(objective=args.objective, steps=args.steps,
                                             batch_size=args.batch_size, lr=args.lr,
                                             seed=args.seed, num_workers=args.workers,
                                             frozen_blocks=args.freeze_blocks).with_settings(args.set or [])
    device = args.device or settings.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    init_from = None
    if args.init_from:
        init_from = str(resolve_checkpoint(args.init_from, [settings.models_dir]))
    trainer = Trainer(cfg, args.data, args.out, init_from=init_from, device=device)
    print(f"training {cfg.arch} ({args.preset}, objective {cfg.objective}) on {len(trainer.paths)} images "
          f"under {trainer.data_dir}, {cfg.steps} steps of {cfg.batch_size}, device {device}", file=sys.stderr)
    result = trainer.run(resume=args.resume, progress=not args.json,
                         max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    summary = {"checkpoint": str(result.checkpoint), "steps": result.steps, "seconds": round(result.seconds, 1),
               "images_seen": result.images_seen, "skipped_files": result.skipped_files,
               "last": result.history[-1] if result.history else None}
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {result.checkpoint} at step {result.steps} ({result.seconds / 60:.1f} min, "
              f"{len(result.skipped_files)} unreadable files skipped)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """Any checkpoint load_backbone reads → a dinoseek-vit/1 file (fp16 with --fp16), keeping its training record."""
    settings = load_settings()
    vit = load_backbone(args.source, search_dirs=[settings.models_dir])
    record = read_train_record(vit.checkpoint_path)
    if args.image_size:
        vit.embed_defaults["image_size"] = args.image_size
    if args.pooling:
        vit.embed_defaults["pooling"] = args.pooling
    if args.mirror_invariant:
        vit.embed_defaults["mirror_invariant"] = True
    if args.near_threshold is not None:
        if not 0.0 < args.near_threshold <= 1.0:
            raise UsageError(f"--near-threshold must be a cosine similarity in (0, 1], got {args.near_threshold}")
        vit.embed_defaults["near_threshold"] = args.near_threshold
    digest = save_checkpoint(vit, args.out, train=record, dtype=torch.float16 if args.fp16 else None,
                             extra={"converted_from": {"path": vit.checkpoint_path, "digest": vit.checkpoint_digest}})
    doc = {"out": str(args.out), "digest": digest, "arch": vit.arch.to_dict(), "fp16": args.fp16}
    print(json.dumps(doc) if args.json else f"wrote {args.out} (sha256 {digest[:12]}…)")
    return 0


def _device_arg(value: str) -> str:
    """``--device``: auto, cpu, cuda or cuda:N, as DINOSEEK_DEVICE takes them."""
    try:
        return parse_device(value)
    except SettingsError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("DINOSEEK_DEVICE: ", "").replace("DINOSEEK_DEVICE ", "")) from exc


def add_model_commands(sub) -> None:
    embed = sub.add_parser("embed", help="embed image files and print their global descriptors")
    embed.add_argument("paths", nargs="+", help="image files or folders (walked recursively)")
    source = embed.add_mutually_exclusive_group()
    source.add_argument("--model", help="checkpoint path or name (default: DINOSEEK_MODEL, then the shipped model)")
    source.add_argument("--random-init", metavar="ARCH",
                        help="use randomly initialised weights of ARCH (e.g. vits14): a pipeline check only")
    embed.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    embed.add_argument("--device", type=_device_arg, help="auto, cpu, cuda or cuda:N (default: DINOSEEK_DEVICE or auto)")
    embed.add_argument("--image-size", type=int,
                       help="long side fed to the model, in pixels (default: the model's recommendation, else 224)")
    embed.add_argument("--pooling", choices=["cls", "gem", "cls+gem"],
                       help="global descriptor (default: the model's recommendation, else cls+gem)")
    embed.add_argument("--batch-size", type=int, default=32)
    embed.add_argument("--int8", action="store_true", help="CPU fast path: int8 dynamic quantisation")
    embed.add_argument("--follow-symlinks", action="store_true")
    embed.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    embed.set_defaults(func=cmd_embed)

    train = sub.add_parser("train", help="train or fine-tune the backbone on unlabeled images (DINOv2 recipe)")
    train.add_argument("--data", required=True, help="folder of images (walked recursively)")
    train.add_argument("--out", required=True, help="checkpoint to write (resume state goes to OUT.state)")
    train.add_argument("--preset", default="cpu-tiny", help="cpu-tiny | gpu-small | gpu-base")
    train.add_argument("--from", dest="init_from", metavar="CKPT",
                       help="fine-tune from any checkpoint load_backbone reads (Meta's or ours)")
    train.add_argument("--objective", choices=["ssl", "copy"],
                       help="ssl: the DINOv2 recipe (default); copy: copy-detection fine-tuning (use with --from)")
    train.add_argument("--resume", action="store_true", help="continue from OUT.state exactly")
    train.add_argument("--steps", type=int, help="override the preset's step count")
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate (use a lower one with --from)")
    train.add_argument("--freeze-blocks", type=int, help="with --from: freeze the embeddings and first N blocks")
    train.add_argument("--seed", type=int)
    train.add_argument("--workers", type=int, help="data-loading processes")
    train.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this long")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override any training setting of the preset (repeatable), e.g. copy_entropy_weight=3")
    train.add_argument("--device", type=_device_arg, help="auto, cpu, cuda or cuda:N (default: DINOSEEK_DEVICE or auto)")
    train.add_argument("--json", action="store_true", help="no progress bar; one JSON summary on stdout")
    train.set_defaults(func=cmd_train)

    convert = sub.add_parser("convert", help="write any supported checkpoint in dinoseek's own format")
    convert.add_argument("source", help="Meta .pth, Hugging Face folder/file, or a dinoseek checkpoint")
    convert.add_argument("--out", required=True)
    convert.add_argument("--fp16", action="store_true", help="store weights in float16 (half the size)")
    convert.add_argument("--image-size", type=int, help="record this as the model's recommended input size")
    convert.add_argument("--pooling", choices=["cls", "gem", "cls+gem"], help="record the recommended pooling")
    convert.add_argument("--mirror-invariant", action="store_true",
                         help="recommend descriptors that average the image and its mirror image")
    convert.add_argument("--near-threshold", type=float,
                         help="record the near-duplicate similarity threshold measured for this model")
    convert.add_argument("--json", action="store_true")
    convert.set_defaults(func=cmd_convert)
