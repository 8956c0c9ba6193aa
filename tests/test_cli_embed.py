"""The ``dinoseek embed`` command, driven as a user would run it (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from model import ViTArch, build_vit, save_checkpoint


def run_cli(*args: str, home: Path | str = "/nonexistent-home", **env: str) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess with DINOSEEK_HOME set and any extra DINOSEEK_* variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DINOSEEK_")}
    full_env.update(DINOSEEK_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-m", "dinoseek.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


def _library(tmp_path: Path, photos) -> Path:
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    photos["coffee"].save(lib / "coffee.jpg", quality=90)
    photos["coffee"].resize((300, 200)).save(lib / "sub" / "coffee_small.png")
    photos["rocket"].save(lib / "sub" / "rocket.webp")
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (lib / "readme.txt").write_text("ignored: not an image extension")
    return lib


def test_embed_json_over_a_folder(tmp_path, photos) -> None:
    lib = _library(tmp_path, photos)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(build_vit(ViTArch(embed_dim=128, depth=2, num_heads=2, img_size=224)), ckpt)
    proc = run_cli("embed", str(lib), "--model", str(ckpt), "--json", "--pooling", "cls")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    paths = [img["path"] for img in doc["images"]]
    assert paths == [str(lib / "coffee.jpg"), str(lib / "sub" / "coffee_small.png"), str(lib / "sub" / "rocket.webp")]
    assert doc["dim"] == 128 and all(len(img["vector"]) == 128 for img in doc["images"])
    assert doc["images"][0]["grid"] == [11, 16]
    assert doc["images"][0]["nearest"]["path"] == str(lib / "sub" / "coffee_small.png")
    assert [e["path"] for e in doc["errors"]] == [str(lib / "broken.jpg")]
    assert len(doc["model"]["digest"]) == 64


def test_model_by_name_from_home(tmp_path, photos) -> None:
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    torch.save(build_vit(ViTArch(embed_dim=64, depth=1, num_heads=1, img_size=112)).state_dict(),
               home / "models" / "dinov2_tiny_pretrain.pth")
    img = tmp_path / "a.png"
    photos["chelsea"].save(img)
    proc = run_cli("embed", str(img), "--json", home=home, DINOSEEK_MODEL="dinov2_tiny")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"]["path"].endswith("dinov2_tiny_pretrain.pth")


def test_errors_are_one_line_and_nonzero(tmp_path) -> None:
    proc = run_cli("embed", str(tmp_path / "missing"), "--random-init", "vits14")
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr
    assert proc.stderr.count("\n") == 1
    img = tmp_path / "x.png"
    Image.new("RGB", (30, 30)).save(img)
    proc = run_cli("embed", str(img), "--model", str(tmp_path / "nope.pth"))
    assert proc.returncode == 2 and "not found" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_cli("embed", str(img), "--random-init", "vitz99")
    assert proc.returncode == 2 and "unknown architecture" in proc.stderr


def test_convert_meta_file_to_fp16_dinoseek(tmp_path) -> None:
    meta = tmp_path / "dinov2_tiny_pretrain.pth"
    vit = build_vit(ViTArch(embed_dim=64, depth=2, num_heads=1, img_size=112, num_register_tokens=4))
    torch.save(vit.state_dict(), meta)
    out = tmp_path / "tiny16.pt"
    proc = run_cli("convert", str(meta), "--out", str(out), "--fp16", "--image-size", "112", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["arch"]["num_register_tokens"] == 4 and doc["fp16"]
    raw = torch.load(out, weights_only=True)
    assert raw["state_dict"]["pos_embed"].dtype == torch.float16
    assert raw["converted_from"]["path"] == str(meta) and raw["embed"] == {"image_size": 112}
    proc = run_cli("convert", str(tmp_path / "missing.pth"), "--out", str(out))
    assert proc.returncode == 2 and "not found" in proc.stderr
