#!/usr/bin/python3
"""torchvision's detections for one image and one weights file, in maskgpu's detection JSON, so
that bench/e2e.ts can validate the engine before it times it (it calls this once and caches the
result under bench/.cache/).

    /usr/bin/python3 bench/torchvision_reference.py --weights models/maskgpu-shapes.safetensors \
        --image models/samples/shapes_2.png --out bench/.cache/bundled/torchvision-shapes_2.json

The model is built as tools/eval_torchvision.py builds it (F16 -> F32, eps and min/max size from
the metadata, current torchvision's resize rule, as the engine resizes); the input is the PNG's
RGB as a contiguous CHW float32 tensor / 255 (tools/README.md: a channels-last view goes through
another bilinear kernel). torchvision's default inference settings; masks binarised at > 0.5.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from eval_torchvision import detections_json, load_torchvision_model  # noqa: E402


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    from PIL import Image

    pixels = np.array(Image.open(args.image).convert("RGB"))
    model, classes = load_torchvision_model(args.weights)
    x = torch.from_numpy(pixels).permute(2, 0, 1).contiguous().to(torch.float32) / 255.0
    t0 = time.perf_counter()
    out = model([x])[0]
    seconds = time.perf_counter() - t0
    detections = detections_json(out, classes)
    result = {
        "image": {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])}, "detections": detections,
        "source": {"weights": args.weights, "image": args.image, "torch": torch.__version__,
                   "torchvision": __import__("torchvision").__version__, "seconds": seconds},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, separators=(",", ":"))
    os.replace(tmp, args.out)
    print(f"torchvision: {len(detections)} detections in {seconds:.2f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
