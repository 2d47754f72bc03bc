#!/usr/bin/python3
"""Export torchvision Mask R-CNN (maskrcnn_resnet50_fpn v1) weights as safetensors for maskgpu.

    /usr/bin/python3 tools/export_torchvision.py --out coco.safetensors --pretrained
    /usr/bin/python3 tools/export_torchvision.py --out m.safetensors --checkpoint maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth
    /usr/bin/python3 tools/export_torchvision.py --out r.safetensors --random 0 --widths 16,32,64,128 --stem 16 \
        --fpn 64 --rep 256 --mask 64 --classes 6 --min-size 320 --max-size 512

The file holds the state dict under current torchvision key names (legacy names from the original
.pth, e.g. `rpn.head.conv.weight`, are renamed; reference doc section 1.7) and `__metadata__`:
format "maskgpu-maskrcnn-v1", classes (JSON array), eps (FrozenBatchNorm eps: 0 for torchvision's
COCO_V1 weights), min_size, max_size, source.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from maskrcnn_models import (  # noqa: E402
    COCO_CATEGORIES, build_maskrcnn, calibrate_class_scores, random_init, resize_current_rule, to_current_names,
)
from safetensors_io import save_file  # noqa: E402

FORMAT = "maskgpu-maskrcnn-v1"
COCO_CHECKPOINT_PREFIX = "maskrcnn_resnet50_fpn_coco-"


def build_metadata(classes: Sequence[str], eps: float, min_size: int, max_size: int, source: str) -> Dict[str, str]:
    """safetensors `__metadata__` (all values strings, as the format requires)."""
    return {
        "format": FORMAT,
        "classes": json.dumps(list(classes)),
        "eps": json.dumps(float(eps)),
        "min_size": str(int(min_size)),
        "max_size": str(int(max_size)),
        "source": source,
    }


def default_classes(num_classes: int) -> List[str]:
    if num_classes == len(COCO_CATEGORIES):
        return list(COCO_CATEGORIES)
    return ["__background__"] + [f"class{i}" for i in range(1, num_classes)]


def read_classes_file(path: str, num_classes: int) -> List[str]:
    with open(path) as f:
        names = [line.strip() for line in f if line.strip()]
    if len(names) != num_classes:
        raise SystemExit(f"{path} has {len(names)} names but the model has {num_classes} classes "
                         f"(count __background__ as the first line)")
    return names


def architecture_from_state_dict(sd: Dict[str, torch.Tensor]) -> Dict[str, object]:
    """build_maskrcnn() arguments read from tensor shapes (so narrower checkpoints export too)."""
    def shape(key: str):
        if key not in sd:
            raise SystemExit(f"checkpoint has no '{key}': not a maskrcnn_resnet50_fpn (v1) state dict")
        return sd[key].shape

    return dict(
        widths=tuple(int(shape(f"backbone.body.layer{i}.0.conv1.weight")[0]) for i in range(1, 5)),
        stem=int(shape("backbone.body.conv1.weight")[0]),
        fpn_channels=int(shape("backbone.fpn.inner_blocks.0.0.weight")[0]),
        representation=int(shape("roi_heads.box_head.fc6.weight")[0]),
        mask_channels=int(shape("roi_heads.mask_head.0.0.weight")[0]),
        num_classes=int(shape("roi_heads.box_predictor.cls_score.weight")[0]),
    )


def load_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    obj = torch.load(path, map_location="cpu")
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SystemExit(f"{path}: expected a state dict (or {{'model': state_dict}}), got {type(obj).__name__}")
    return to_current_names(obj)


def model_from_state_dict(sd: Dict[str, torch.Tensor], eps: float, min_size: int, max_size: int):
    """Load into our torchvision-structured model (strict), which validates every key and shape and
    yields the canonical key order."""
    model = build_maskrcnn(min_size=min_size, max_size=max_size, eps=eps, **architecture_from_state_dict(sd))
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise SystemExit(f"checkpoint does not fit maskrcnn_resnet50_fpn (v1) with these widths:\n{e}")
    return model


def pretrained_state_dict() -> Dict[str, torch.Tensor]:
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn

    weights = MaskRCNN_ResNet50_FPN_Weights.COCO_V1
    try:
        model = maskrcnn_resnet50_fpn(weights=weights)
    except Exception as e:  # no network, proxy, certificate, ...: say what to do instead
        raise SystemExit(
            f"could not download torchvision's COCO weights ({type(e).__name__}: {e}).\n"
            f"Download {weights.url} on a machine with internet access (or copy it into "
            f"{torch.hub.get_dir()}/checkpoints/) and run again, or pass it with --checkpoint FILE.pth "
            f"(eps 0 is then chosen from the file name)."
        )
    return to_current_names(model.state_dict())


def parse_ints(text: str, n: int, what: str) -> List[int]:
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise SystemExit(f"--{what} needs {n} comma-separated integers, got {text!r}")
    return vals


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output .safetensors")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a torchvision .pth state dict (legacy names or {'model': sd} accepted)")
    src.add_argument("--pretrained", action="store_true", help="torchvision's COCO_V1 weights (downloads 170 MB)")
    src.add_argument("--random", type=int, metavar="SEED", help="seeded random weights with decisive scores")
    ap.add_argument("--widths", default="64,128,256,512", help="--random: bottleneck widths of layer1..4")
    ap.add_argument("--stem", type=int, default=64, help="--random: conv1 output channels")
    ap.add_argument("--fpn", type=int, default=256, help="--random: FPN channels")
    ap.add_argument("--rep", type=int, default=1024, help="--random: box head representation size")
    ap.add_argument("--mask", type=int, default=256, help="--random: mask head channels")
    ap.add_argument("--classes", type=int, default=91, help="--random: number of classes incl. background")
    ap.add_argument("--eps", type=float, help="FrozenBatchNorm eps to record (default 0 for COCO_V1 weights, else 1e-5)")
    ap.add_argument("--min-size", type=int, default=800)
    ap.add_argument("--max-size", type=int, default=1333)
    ap.add_argument("--classes-file", help="class names, one per line, __background__ first")
    ap.add_argument("--dtype", choices=("f32", "f16"), default="f32")
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)

    if os.path.exists(args.out) and not args.force:
        raise SystemExit(f"{args.out} exists; pass --force to overwrite it")

    if args.pretrained:
        eps = 0.0 if args.eps is None else args.eps
        sd = pretrained_state_dict()
        source = "torchvision MaskRCNN_ResNet50_FPN_Weights.COCO_V1"
        model = model_from_state_dict(sd, eps, args.min_size, args.max_size)
    elif args.checkpoint:
        is_coco = os.path.basename(args.checkpoint).startswith(COCO_CHECKPOINT_PREFIX)
        eps = args.eps if args.eps is not None else (0.0 if is_coco else 1e-5)
        if is_coco and args.eps is None:
            print("note: torchvision COCO_V1 checkpoint recognised by name: recording eps 0 (torchvision's overwrite_eps)")
        source = f"checkpoint {os.path.basename(args.checkpoint)}"
        model = model_from_state_dict(load_checkpoint(args.checkpoint), eps, args.min_size, args.max_size)
    else:
        eps = 1e-5 if args.eps is None else args.eps
        model = build_maskrcnn(widths=parse_ints(args.widths, 4, "widths"), stem=args.stem, fpn_channels=args.fpn,
                               representation=args.rep, mask_channels=args.mask, num_classes=args.classes,
                               min_size=args.min_size, max_size=args.max_size, eps=eps)
        random_init(model, args.random)
        resize_current_rule(model)
        model.eval()
        from make_golden import synthetic_image, to_model_input  # lazy: make_golden imports this module

        calibrate_class_scores(model, [to_model_input(synthetic_image(480, 640, 10, 5))], logit_std=10.0,
                               foreground_fraction=0.02)
        source = f"random seed {args.random} (tools/export_torchvision.py --random)"

    num_classes = int(model.roi_heads.box_predictor.cls_score.weight.shape[0])
    classes = read_classes_file(args.classes_file, num_classes) if args.classes_file else default_classes(num_classes)
    metadata = build_metadata(classes, eps, args.min_size, args.max_size, source)
    state = model.state_dict()
    save_file(state, args.out, metadata, dtype=args.dtype)
    print(f"wrote {args.out}: {len(state)} tensors, {sum(v.numel() for v in state.values())} values ({args.dtype}), "
          f"{num_classes} classes, eps {eps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
