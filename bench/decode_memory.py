"""Peak memory of decoding hostile pictures that pass the pixel cap: each decoded in a fresh
process (``decode_bytes``, as indexing and the API decode), its peak RSS growth printed beside the
footprint model/decode_memory.py states for it.

    .venv/bin/python bench/decode_memory.py [--side 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
MEASURE = """
import json, sys
sys.path.insert(0, sys.argv[2])
from PIL import Image
from indexer.ingest.reading import decode_bytes, read_bytes
from model.decode_memory import decode_footprint
data, stat = read_bytes(sys.argv[1])
footprint = decode_footprint(Image.open(sys.argv[1]))
def kb(field):
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from the RSS now
before = kb("VmRSS:")
loaded = decode_bytes(sys.argv[1], data, stat, 10**9)
grown = (kb("VmHWM:") - before) / 1024
print(json.dumps({"grown_mb": grown, "footprint_mb": footprint / 2**20, "size": loaded.image.size}))
"""


def peak_decode(path: Path, root: Path = ROOT) -> dict:
    """Decode ``path`` in a fresh process with the code under ``root``: peak RSS growth
    (``grown_mb``), the stated footprint (``footprint_mb``) and the decoded ``size``."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), str(root)], capture_output=True, text=True,
                         timeout=300, check=True)
    return json.loads(out.stdout)


def hostile(folder: Path, side: int) -> list[Path]:
    """A 16-bit grey PNG of side x side (a few hundred kB), a float TIFF and an 8-bit RGB PNG of
    0.6 side, each mostly flat so the files stay small."""
    grey16 = np.zeros((side, side), dtype=np.uint16)
    grey16[::97, :] = 60_000
    Image.fromarray(grey16).save(folder / "grey16.png", compress_level=9)
    small = int(side * 0.6)
    floats = np.zeros((small, small), dtype=np.float32)
    floats[::50, :] = 3.5
    Image.fromarray(floats).save(folder / "float32.tif", compression="tiff_adobe_deflate")
    rgb = np.zeros((small, small, 3), dtype=np.uint8)
    rgb[::31, :, 1] = 200
    Image.fromarray(rgb).save(folder / "rgb8.png", compress_level=9)
    return [folder / "grey16.png", folder / "float32.tif", folder / "rgb8.png"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in hostile(Path(tmp), args.side):
            doc = peak_decode(path)
            with Image.open(path) as img:
                print(f"{path.name:12s} {img.mode:5s} {img.width}x{img.height} file {path.stat().st_size / 1024:.0f} kB: "
                      f"peak RSS +{doc['grown_mb']:.0f} MB, stated footprint {doc['footprint_mb']:.0f} MB")


if __name__ == "__main__":
    main()
