#!/usr/bin/python3
"""JPEG golden fixtures: the golden test model (tests/fixtures/golden/model.safetensors, seeded
random weights the engine never saw) on JPEG copies of the golden images, decoded by Pillow and run
by torchvision. tests/jpeg-golden.test.ts checks that maskgpu's detections on the same files
equal these: decoding is then the only new step against the PNG golden tests.

    /usr/bin/python3 tools/make_jpeg_golden.py [--out tests/fixtures/golden-jpeg]

One file per common kind: baseline 4:4:4, 4:2:0 and 4:2:2, progressive 4:2:0 and 4:2:2,
grayscale (saved as 1-channel JPEG; Pillow's convert('RGB') replicates it). Writes
<name>.jpg, <name>.json (bench/torchvision_reference.py's output) and manifest.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = [
    ("baseline_444", 0, dict(quality=90, subsampling=0)),
    ("baseline_420", 1, dict(quality=85, subsampling=2)),
    ("baseline_422", 2, dict(quality=80, subsampling=1)),
    ("progressive_420", 0, dict(quality=85, subsampling=2, progressive=True)),
    ("progressive_422", 1, dict(quality=75, subsampling=1, progressive=True)),
    ("grayscale", 2, dict(quality=85, gray=True)),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/fixtures/golden-jpeg"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    weights = os.path.join(ROOT, "tests/fixtures/golden/model.safetensors")
    manifest = []
    for name, image, kw in KINDS:
        src = Image.open(os.path.join(ROOT, f"tests/fixtures/golden/image_{image}.png")).convert("RGB")
        gray = kw.pop("gray", False)
        if gray:
            src = src.convert("L")
        path = os.path.join(args.out, f"{name}.jpg")
        src.save(path, "JPEG", **kw)
        out = os.path.join(args.out, f"{name}.json")
        subprocess.run([sys.executable, os.path.join(ROOT, "bench/torchvision_reference.py"), "--weights", weights, "--image", path, "--out", out], check=True)
        with open(out) as f:
            result = json.load(f)
        result.pop("source", None)  # machine-specific paths and timings
        with open(out, "w") as f:
            json.dump(result, f, separators=(",", ":"))
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        manifest.append({"name": name, "image": f"image_{image}.png", "options": kw, "gray": gray, "sha256": digest, "detections": len(result["detections"])})
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps(manifest, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
