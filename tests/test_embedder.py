"""Embedder: aspect-preserving preprocessing, EXIF, batching, pooling and the int8 CPU path."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from model import Embedder, ViTArch, build_vit, load_image
from model.preprocess import ImageDecodeError, model_input_size, to_rgb


@pytest.fixture(scope="module")
def small_vit():
    """A small random ViT whose residual branches matter (LayerScale gammas of a trained scale,
    not the 1e-5 initialisation that would make every block nearly the identity)."""
    torch.manual_seed(1)
    vit = build_vit(ViTArch(embed_dim=128, depth=3, num_heads=2, img_size=224)).eval()
    with torch.no_grad():
        for name, p in vit.named_parameters():
            if name.endswith(".gamma"):
                p.uniform_(0.3, 1.0)
    return vit


def test_input_size_keeps_aspect_ratio_in_multiples_of_14() -> None:
    assert model_input_size(600, 400, 224) == (224, 154)
    assert model_input_size(400, 600, 224) == (154, 224)
    assert model_input_size(3000, 100, 224) == (224, 14)  # a thin strip keeps at least one patch
    for w, h in [(451, 300), (1000, 872), (17, 900)]:
        mw, mh = model_input_size(w, h, 224)
        assert mw % 14 == 0 and mh % 14 == 0 and max(mw, mh) == 224
        assert abs(mw / mh - w / h) / (w / h) < 0.1 or min(mw, mh) == 14


def test_patch_grids_follow_each_image_shape(small_vit, photos) -> None:
    emb = Embedder(small_vit, device="cpu", pooling="cls+gem")
    images = [photos["coffee"], photos["astronaut"], photos["chelsea"].rotate(90, expand=True)]
    out = emb.embed(images)
    assert out.vectors.shape == (3, 256) and out.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    assert [p.shape for p in out.patches] == [(11, 16, 128), (16, 16, 128), (16, 11, 128)]
    assert out.image_sizes == [(600, 400), (512, 512), (300, 451)]


def test_result_does_not_depend_on_batch_company(small_vit, photos) -> None:
    emb = Embedder(small_vit, device="cpu", batch_size=2)
    images = list(photos.values())
    together = emb.embed(images)
    for i, img in enumerate(images):
        alone = emb.embed([img])
        np.testing.assert_allclose(alone.vectors[0], together.vectors[i], atol=1e-5)
        np.testing.assert_allclose(alone.patches[0], together.patches[i], atol=1e-4)


def test_padded_copy_stays_closer_than_other_photos(small_vit, photos) -> None:
    """Whole-image preprocessing: a letterboxed copy resembles its source more than other photos."""
    emb = Embedder(small_vit, device="cpu")
    src = photos["rocket"]
    padded = Image.new("RGB", (src.width, src.height + 200), (0, 0, 0))
    padded.paste(src, (0, 100))
    out = emb.embed([src, padded, photos["coffee"], photos["astronaut"], photos["chelsea"]])
    sims = out.vectors[1] @ out.vectors.T
    assert sims[0] > max(sims[2:])


@pytest.mark.parametrize("pooling,dim", [("cls", 128), ("gem", 128), ("cls+gem", 256)])
def test_poolings(small_vit, photos, pooling, dim) -> None:
    emb = Embedder(small_vit, device="cpu", pooling=pooling)
    out = emb.embed([photos["coffee"]])
    assert out.vectors.shape == (1, dim) and emb.dim == dim
    assert abs(float(np.linalg.norm(out.vectors[0])) - 1.0) < 1e-5
    with pytest.raises(ValueError, match="unknown pooling"):
        Embedder(small_vit, device="cpu", pooling="max")


def _jpeg_bytes(img: Image.Image, orientation: int | None = None, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_applied(tmp_path, photos) -> None:
    src = photos["coffee"]  # 600x400 landscape
    # Orientation 6: the stored pixels must be rotated 90° clockwise for display.
    stored = src.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    path = tmp_path / "sideways.jpg"
    path.write_bytes(_jpeg_bytes(stored, orientation=6))
    img = load_image(path)
    assert img.size == (600, 400)
    diff = np.abs(np.asarray(img, np.float32) - np.asarray(src, np.float32)).mean()
    assert diff < 6.0


def test_jpeg_draft_mode_decodes_smaller_but_never_below_target(tmp_path, photos) -> None:
    big = photos["hubble_deep_field"].resize((2000, 1744))
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg_bytes(big))
    full = load_image(path)
    fast = load_image(path, target_long_side=224)
    assert full.size == (2000, 1744)
    assert fast.size[0] < 2000 and max(fast.size) >= 224
    # Draft decoding feeds the model almost the same pixels as a full decode would.
    emb_full = Embedder(build_vit(ViTArch(embed_dim=128, depth=2, num_heads=2, img_size=224)).eval(), device="cpu")
    a = emb_full.embed([full, fast]).vectors
    assert float(a[0] @ a[1]) > 0.98


def test_modes_are_converted_and_alpha_flattened() -> None:
    rgba = Image.new("RGBA", (20, 10), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent → white background
    assert to_rgb(Image.new("L", (5, 5), 128)).getpixel((0, 0)) == (128, 128, 128)
    assert to_rgb(Image.new("CMYK", (5, 5), (0, 0, 0, 0))).mode == "RGB"
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert to_rgb(sixteen).getpixel((0, 0)) == (255, 255, 255)
    pal = Image.new("P", (4, 4))
    pal.info["transparency"] = 0
    assert to_rgb(pal).mode == "RGB"


def test_bad_files_fail_alone_in_embed_paths(tmp_path, small_vit, photos) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(_jpeg_bytes(photos["chelsea"]))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(_jpeg_bytes(photos["coffee"])[:500])
    missing = tmp_path / "gone.jpg"
    emb = Embedder(small_vit, device="cpu")
    out = emb.embed_paths([good, empty, text, truncated, missing, good])
    assert out.paths == [str(good), str(good)]
    assert out.vectors.shape == (2, emb.dim)
    failed = {e["path"]: e["error"] for e in out.errors}
    assert set(failed) == {str(empty), str(text), str(truncated), str(missing)}
    for path, error in failed.items():
        assert path in error
    assert "cannot read file" in failed[str(missing)] and "not an image" in failed[str(text)]
    with pytest.raises(ImageDecodeError, match="notes.png"):
        load_image(text)


def test_int8_fast_path_stays_close_to_fp32(small_vit, photos) -> None:
    images = list(photos.values())
    fp32 = Embedder(small_vit, device="cpu").embed(images).vectors
    int8 = Embedder(small_vit, device="cpu", quantize=True).embed(images).vectors
    cos = (fp32 * int8).sum(axis=1)
    assert cos.min() >= 0.99, cos
    assert cos.min() < 0.99999  # the quantised model really runs


def test_cuda_requests_fail_clearly_without_cuda(small_vit) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Embedder(small_vit, device="cuda")


def test_mirror_invariant_descriptors(small_vit, photos) -> None:
    from PIL import ImageOps

    img = photos["astronaut"]
    plain = Embedder(small_vit, image_size=112).embed([img, ImageOps.mirror(img)])
    assert float(plain.vectors[0] @ plain.vectors[1]) < 0.9999  # a ViT is not mirror-symmetric by itself
    emb = Embedder(small_vit, image_size=112, mirror_invariant=True)
    out = emb.embed([img, ImageOps.mirror(img), photos["coffee"]])
    assert float(out.vectors[0] @ out.vectors[1]) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(np.linalg.norm(out.vectors, axis=1), 1.0, atol=1e-5)
    assert out.patches[0].shape == plain.patches[0].shape  # patch grids stay those of the picture itself
    assert np.allclose(out.patches[0], plain.patches[0], atol=1e-5)
    small_vit.embed_defaults = {"mirror_invariant": True}  # the checkpoint's recommendation is the default
    try:
        assert Embedder(small_vit).mirror_invariant
    finally:
        small_vit.embed_defaults = {}
