#!/usr/bin/python3
"""torchvision on the CPU, timed the way bench/peers.ts (npm run bench:peers) times maskgpu.

    /usr/bin/python3 tools/bench_torchvision.py time --weights W.safetensors --image IMG.png \
        [--repeats 5] [--warmup 1] [--budget-s S] [--threads 2] --out result.json
    /usr/bin/python3 tools/bench_torchvision.py make-fullsize --out-dir bench/.cache/fullsize
    /usr/bin/python3 tools/bench_torchvision.py once --weights W --image IMG [--threads 2] [--score-thresh 0.3] --out result.json

`time` builds the model as tools/eval_torchvision.py does (F16 -> F32, eps and min/max size from
the metadata, current torchvision's resize rule, as the engine resizes), reads the PNG as a
contiguous CHW float32 tensor / 255, and times, each as the median of N runs after warm-up
(eval, no_grad, torch.set_num_threads(--threads): the machine's cores by default; --budget-s
ends a part's timed runs early, keeping one at least):
  * `full`: model([image]) — transform, backbone, RPN, RoI heads, mask paste;
  * `backbone`: model.backbone(x) — ResNet-50 body + FPN, 5 outputs — on the normalised padded
    input x that model.transform makes (what maskgpu's preprocess writes).
It writes JSON: medians and samples in ms, the padded input size, and the detections of the first
full run in maskgpu's detection format (boxes in original pixels, masks > 0.5 as COCO RLE), so
that the bench can check them against maskgpu's before it believes any timing.

`once` runs one forward pass as a user would (for process-to-process timing: time the whole
command) and writes its time and detections.

`make-fullsize` writes the full-size architecture's weights and image exactly as
tools/compare_fullsize.py does (ResNet-50 widths, 91 classes, seed 0, its "conditioned" recipe,
the 427x640 synthetic image that resizes to 800x1199, padded 800x1216): fullsize-conditioned.safetensors
and image_427x640.png in --out-dir.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def timed(fn: Callable[[], object], repeats: int, warmup: int, budget_s: float) -> Dict[str, object]:
    """Warm-up, then timed runs until `repeats` or until `budget_s` is spent (one timed run at least)."""
    samples: List[float] = []
    start = time.perf_counter()
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        fn()
        if i >= warmup:
            samples.append((time.perf_counter() - t0) * 1e3)
        if samples and time.perf_counter() - start > budget_s:
            break
    return {"medianMs": statistics.median(samples), "samplesMs": samples}


@torch.no_grad()
def cmd_time(args) -> int:
    from PIL import Image

    from eval_torchvision import detections_json, load_torchvision_model

    torch.set_num_threads(args.threads)
    pixels = np.array(Image.open(args.image).convert("RGB"))
    model, classes = load_torchvision_model(args.weights)
    image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous().to(torch.float32) / 255.0

    out = model([image])[0]  # first call outside the timing, kept for the output check
    detections = detections_json(out, classes)
    full = timed(lambda: model([image]), args.repeats, args.warmup, args.budget_s)
    x = model.transform([image])[0].tensors
    backbone = timed(lambda: model.backbone(x), args.repeats, args.warmup, args.budget_s)
    result = {
        "torch": torch.__version__, "torchvision": __import__("torchvision").__version__,
        "threads": torch.get_num_threads(), "repeats": args.repeats, "warmup": args.warmup,
        "image": {"width": int(pixels.shape[1]), "height": int(pixels.shape[0])},
        "padded": [int(x.shape[-2]), int(x.shape[-1])],
        "full": full, "backbone": backbone, "detections": detections,
    }
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, separators=(",", ":"))
    os.replace(tmp, args.out)
    print(f"torchvision ({result['threads']} threads): full {full['medianMs']:.1f} ms, backbone {backbone['medianMs']:.1f} ms "
          f"(median of {len(full['samplesMs'])} / {len(backbone['samplesMs'])}), {len(detections)} detections -> {args.out}")
    return 0


def cmd_once(args) -> int:
    """One image, one run, as a user runs it: the process's wall time is the measure
    (load, model construction, one forward pass, the detections written)."""
    from PIL import Image

    from eval_torchvision import detections_json, load_torchvision_model

    torch.set_num_threads(args.threads)
    pixels = np.array(Image.open(args.image).convert("RGB"))
    model, classes = load_torchvision_model(args.weights)
    model.roi_heads.score_thresh = args.score_thresh
    image = torch.from_numpy(pixels).permute(2, 0, 1).contiguous().to(torch.float32) / 255.0
    t = time.perf_counter()
    with torch.no_grad():
        out = model([image])[0]
    ms = (time.perf_counter() - t) * 1000
    detections = detections_json(out, classes)
    with open(args.out, "w") as f:
        json.dump({"forwardMs": ms, "threads": torch.get_num_threads(), "detections": detections}, f, separators=(",", ":"))
    print(f"torchvision ({torch.get_num_threads()} threads): forward {ms:.0f} ms, {len(detections)} detections (score > {args.score_thresh}) -> {args.out}")
    return 0


def cmd_make_fullsize(args) -> int:
    from compare_fullsize import make_image, write_conditioned

    torch.set_num_threads(2)  # as compare_fullsize.py's main does; with both, the files are bit-identical to its
    torch.manual_seed(0)
    os.makedirs(args.out_dir, exist_ok=True)
    image = make_image(os.path.join(args.out_dir, "image_427x640.png"))
    write_conditioned(os.path.join(args.out_dir, "fullsize-conditioned.safetensors"), image)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("time", help="time torchvision (full model and backbone) and write JSON")
    t.add_argument("--weights", required=True)
    t.add_argument("--image", required=True)
    t.add_argument("--repeats", type=int, default=5)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--budget-s", type=float, default=float("inf"), help="stop timing one part after this many seconds")
    t.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: the machine's cores)")
    t.add_argument("--out", required=True)
    m = sub.add_parser("make-fullsize", help="write tools/compare_fullsize.py's full-size weights and image")
    m.add_argument("--out-dir", required=True)
    o = sub.add_parser("once", help="one forward pass of one image, as a user runs it (time the whole process)")
    o.add_argument("--weights", required=True)
    o.add_argument("--image", required=True)
    o.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: the machine's cores)")
    o.add_argument("--score-thresh", type=float, default=0.05, help="box score threshold (torchvision's default 0.05)")
    o.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.command == "time" and (args.repeats < 1 or args.warmup < 0):
        raise SystemExit("--repeats must be >= 1 and --warmup >= 0")
    return {"time": cmd_time, "once": cmd_once, "make-fullsize": cmd_make_fullsize}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
