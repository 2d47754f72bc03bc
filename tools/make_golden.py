#!/usr/bin/python3
"""Regenerate maskgpu's golden fixtures from torchvision (the definition of correct).

    /usr/bin/python3 tools/make_golden.py                       # rewrites tests/fixtures/golden/
    /usr/bin/python3 tools/make_golden.py --out-dir /tmp/g      # same files elsewhere (e.g. to diff)
    /usr/bin/python3 tools/make_golden.py --full-size OUT.safetensors   # ResNet-50-size random model

The golden model is torchvision's maskrcnn_resnet50_fpn structure (tools/maskrcnn_models.py) made
narrow so fixtures stay small and the engine's tests stay fast: widths (8,16,32,64), stem 8, FPN 32,
representation 64, mask head 16, 6 classes, min/max size 256/400, FrozenBN eps 1e-5, seeded random
weights, current torchvision's resize rule. Each image is run through the same submodules, in the
same order, as GeneralizedRCNN.forward (transform -> backbone -> rpn -> roi_heads ->
transform.postprocess), and every stage's output is saved (see tools/README.md for the list).
Needs Debian's torch 1.13 / torchvision 0.14 (`/usr/bin/python3`); CPU only, ~4 s.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List, Tuple

import torch
import torchvision
import torchvision.ops.boxes as box_ops
from torchvision.io import write_png

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import build_metadata  # noqa: E402
from maskrcnn_models import (  # noqa: E402
    COCO_CATEGORIES, build_maskrcnn, calibrate_class_scores, check_against_reference_keys,
    random_init, resize_current_rule, resized_size,
)
from safetensors_io import load_file, round_trip_check, save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "tests", "fixtures", "golden")

GOLDEN_CLASSES = ["__background__", "circle", "square", "triangle", "star", "ring"]
GOLDEN_CONFIG = dict(widths=(8, 16, 32, 64), stem=8, fpn_channels=32, representation=64, mask_channels=16,
                     num_classes=len(GOLDEN_CLASSES), min_size=256, max_size=400, eps=1e-5)
WEIGHT_SEED = 0
# Score calibration (maskrcnn_models.calibrate_class_scores) on images 0 and 1 only; image 2 has
# fewer shapes, so it gets few detections.
CALIBRATION = dict(logit_std=10.0, foreground_fraction=0.02)
IMAGES = [  # (height, width, seed, shapes): landscape with a resized width not a multiple of 32,
    (150, 200, 0, 5),  # portrait, and a small image with few detections
    (240, 160, 1, 5),
    (97, 131, 12, 2),
]
SHAPES = ("circle", "square", "triangle", "star", "ring")


# --- synthetic images ------------------------------------------------------------------------------

def _shape_mask(kind: str, y: torch.Tensor, x: torch.Tensor, cy: float, cx: float, r: float, angle: float):
    dy, dx = y - cy, x - cx
    u = dx * math.cos(angle) + dy * math.sin(angle)  # shape frame
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    rho = torch.sqrt(u * u + v * v)
    if kind == "circle":
        return rho <= r
    if kind == "square":
        return (u.abs() <= r * 0.8) & (v.abs() <= r * 0.8)
    if kind == "ring":
        return (rho <= r) & (rho >= r * 0.55)
    if kind == "star":  # smooth 5-pointed star in polar form
        return rho <= r * (0.62 + 0.38 * torch.cos(5 * torch.atan2(v, u)))
    if kind == "triangle":  # equilateral: inside three half-planes
        inside = torch.ones_like(rho, dtype=torch.bool)
        for k in range(3):
            a = angle + k * 2 * math.pi / 3
            inside &= (dx * math.cos(a) + dy * math.sin(a)) <= r * 0.5
        return inside
    raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")


def synthetic_image(height: int, width: int, seed: int, num_shapes: int = 5) -> torch.Tensor:
    """uint8 [3, H, W]: smooth gradient/sine background plus flat-coloured shapes, so the random
    network's features, proposals and masks have structure instead of being noise. Seeded torch only:
    the same seed gives the same pixels everywhere."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(height, dtype=torch.float64)[:, None].expand(height, width)
    x = torch.arange(width, dtype=torch.float64)[None, :].expand(height, width)
    yn, xn = y / max(height - 1, 1), x / max(width - 1, 1)
    p = torch.rand(3, 4, generator=g, dtype=torch.float64)
    chans = []
    for c in range(3):
        a, b, f, ph = p[c].tolist()
        chans.append(0.25 + 0.35 * a * xn + 0.25 * b * yn + 0.15 * torch.sin(2 * math.pi * (0.5 + f) * (xn + yn) + 6 * ph))
    img = torch.stack(chans)
    for i in range(num_shapes):
        cy, cx, rr, ang = torch.rand(4, generator=g, dtype=torch.float64).tolist()
        r = (0.10 + 0.15 * rr) * min(height, width)
        cy, cx = r + cy * max(height - 2 * r, 1), r + cx * max(width - 2 * r, 1)
        colour = torch.rand(3, generator=g, dtype=torch.float64)
        mask = _shape_mask(SHAPES[i % len(SHAPES)], y, x, cy, cx, r, ang * 2 * math.pi)
        img = torch.where(mask[None], colour[:, None, None], img)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def to_model_input(image_u8: torch.Tensor) -> torch.Tensor:
    """float32 RGB in [0,1] as torchvision expects: a true float32 division by 255 (like
    convert_image_dtype), not a multiplication by 1/255."""
    return image_u8.to(torch.float32) / 255.0


# --- helpers ---------------------------------------------------------------------------------------

def rle_encode(mask: torch.Tensor) -> List[int]:
    """COCO uncompressed RLE of a bool [H, W] mask: column-major (Fortran) order, runs alternate
    starting with the zero run (a leading 0 when the first pixel is set)."""
    flat = mask.t().reshape(-1).to(torch.int8)
    n = flat.numel()
    if n == 0:
        return []
    change = (torch.nonzero(flat[1:] != flat[:-1]).flatten() + 1).tolist()
    bounds = [0] + change + [n]
    runs = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    return ([0] + runs) if flat[0].item() == 1 else runs


def nms_iou_margin(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, thr: float) -> float:
    """Smallest |IoU - thr| over the comparisons NMS actually makes (kept box vs each later,
    not yet suppressed box of the same group), replaying nms_kernel.cpp's loop in float32."""
    margin = math.inf
    for group in torch.unique(idxs):
        sel = torch.nonzero(idxs == group).flatten()
        b = boxes[sel]
        order = scores[sel].sort(stable=True, descending=True).indices
        b = b[order]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        alive = torch.ones(b.shape[0], dtype=torch.bool)
        for i in range(b.shape[0]):
            if not alive[i]:
                continue
            rest = torch.nonzero(alive[i + 1:]).flatten() + i + 1
            if rest.numel() == 0:
                break
            w = (torch.min(b[i, 2], b[rest, 2]) - torch.max(b[i, 0], b[rest, 0])).clamp_min(0)
            h = (torch.min(b[i, 3], b[rest, 3]) - torch.max(b[i, 1], b[rest, 1])).clamp_min(0)
            inter = w * h
            iou = inter / (area[i] + area[rest] - inter)
            margin = min(margin, float((iou - thr).abs().min()))
            alive[rest[iou > thr]] = False
    return margin


def level_mapper_margin(boxes: torch.Tensor) -> float:
    """Smallest distance of MultiScaleRoIAlign's level value 4 + log2(sqrt(area)/224) + 1e-6 to a
    floor boundary that changes the clamped level (3, 4 or 5)."""
    if boxes.numel() == 0:
        return math.inf
    s = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    v = 4 + torch.log2(s / 224) + torch.tensor(1e-6, dtype=s.dtype)
    return float(torch.stack([(v - k).abs() for k in (3, 4, 5)]).min())


class NmsRecorder:
    """Wraps torchvision.ops.boxes.batched_nms (rpn.py and roi_heads.py call it through that module)
    to record which implementation each call takes: tv0.14 uses the per-class 'vanilla' loop when
    boxes.numel() > 4000 on CPU, else the 'coordinate trick' (offset boxes by class * (max + 1))."""

    def __init__(self):
        self.calls: List[Dict[str, object]] = []
        self.stage = ""
        self._orig = box_ops.batched_nms

    def __enter__(self):
        orig = self._orig

        def recorded(boxes, scores, idxs, iou_threshold):
            keep = orig(boxes, scores, idxs, iou_threshold)
            if self.stage != "full_forward":
                self.calls.append({
                    "stage": self.stage, "boxes": int(boxes.shape[0]), "numel": int(boxes.numel()),
                    "iou_threshold": iou_threshold,
                    "path": "vanilla" if boxes.numel() > 4000 else "coordinate_trick", "kept": int(keep.numel()),
                    "iou_margin_min": nms_iou_margin(boxes, scores, idxs, iou_threshold),
                })
            return keep

        box_ops.batched_nms = recorded
        return self

    def __exit__(self, *exc):
        box_ops.batched_nms = self._orig


# --- the golden run --------------------------------------------------------------------------------

def build_golden_model(images: List[torch.Tensor]) -> torch.nn.Module:
    model = build_maskrcnn(**GOLDEN_CONFIG)
    random_init(model, WEIGHT_SEED)
    resize_current_rule(model)
    model.eval()
    calibrate_class_scores(model, [to_model_input(im) for im in images[:2]], **CALIBRATION)
    return model


def load_golden_model(path: str) -> torch.nn.Module:
    """A fresh model with the weights read back from the fixture file, so the golden outputs are
    exactly what the committed weights produce."""
    tensors, _ = load_file(path)
    model = build_maskrcnn(**GOLDEN_CONFIG)
    model.load_state_dict(tensors, strict=True)
    resize_current_rule(model)
    return model.eval()


# Images whose normalised input and FPN maps are stored (about 2 MB each in float32).
FEATURE_IMAGES = (0,)


@torch.no_grad()
def run_stages(model, image_u8: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], Dict[str, object]]:
    """Run GeneralizedRCNN.forward's steps one by one and return (tensors, json-able extras)."""
    x = to_model_input(image_u8)
    original_size = (int(x.shape[-2]), int(x.shape[-1]))
    captured: Dict[str, object] = {}
    h1 = model.rpn.head.register_forward_hook(lambda m, i, o: captured.setdefault("rpn_head", o))
    h2 = model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: captured.setdefault("box_pred", o))
    filter_proposals = model.rpn.filter_proposals

    def filter_and_capture(*args, **kwargs):
        boxes, scores = filter_proposals(*args, **kwargs)
        captured.setdefault("proposal_scores", scores)
        return boxes, scores

    model.rpn.filter_proposals = filter_and_capture
    try:
        with NmsRecorder() as nms:
            image_list, _ = model.transform([x])
            features = model.backbone(image_list.tensors)
            nms.stage = "rpn"
            proposals, _ = model.rpn(image_list, features)
            nms.stage = "roi_heads"
            detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
            det = {k: v.clone() for k, v in detections[0].items()}
            post = model.transform.postprocess(detections, image_list.image_sizes, [original_size])[0]
            nms.stage = "full_forward"
            reference = model([x])[0]
    finally:
        del model.rpn.filter_proposals
        h1.remove()
        h2.remove()
    for k in ("boxes", "scores", "labels", "masks"):  # the step-by-step run must be the model's forward
        if not torch.equal(post[k], reference[k]):
            raise AssertionError(f"step-by-step '{k}' differs from model(images); update run_stages to match GeneralizedRCNN")

    tensors: Dict[str, torch.Tensor] = {"input": image_list.tensors}
    for name, f in features.items():
        tensors[f"fpn.{name}"] = f
    tensors["proposals"] = proposals[0]
    tensors["proposal_scores"] = captured["proposal_scores"][0]
    tensors["boxes"] = det["boxes"]
    tensors["scores"] = det["scores"]
    tensors["labels"] = det["labels"].to(torch.float32)
    tensors["mask_probs"] = det["masks"][:, 0]
    tensors["final_boxes"] = post["boxes"]

    resized = [int(s) for s in image_list.image_sizes[0]]
    assert tuple(resized) == resized_size(*original_size, GOLDEN_CONFIG["min_size"], GOLDEN_CONFIG["max_size"])
    detections_json = []
    for i in range(post["boxes"].shape[0]):
        label = int(post["labels"][i])
        detections_json.append({
            "box": [float(v) for v in post["boxes"][i]],
            "label": label,
            "labelName": GOLDEN_CLASSES[label],
            "score": float(post["scores"][i]),
            "mask": {"size": list(original_size), "counts": rle_encode(post["masks"][i, 0] > 0.5)},
        })
    extras = {
        "image": {"width": original_size[1], "height": original_size[0]},
        "resized": resized,
        "padded": [int(s) for s in image_list.tensors.shape[-2:]],
        "num_proposals": int(proposals[0].shape[0]),
        "detections": detections_json,
        "nms_calls": nms.calls,
        "decision_margins": {
            **_decision_margins(captured, model),
            "nms_iou_margin_min": min([c["iou_margin_min"] for c in nms.calls] or [math.inf]),
            "level_mapper_margin_min": min(level_mapper_margin(proposals[0]), level_mapper_margin(det["boxes"])),
            "mask_pixels_within_1e-4_of_0.5": int(((post["masks"] - 0.5).abs() < 1e-4).sum()),
        },
    }
    return tensors, extras


def _decision_margins(captured, model) -> Dict[str, float]:
    """How far this image's data sits from the pipeline's hard decision boundaries; a port whose
    float results differ by less than these cannot flip the decision."""
    logits, _ = captured["rpn_head"]
    gaps = []
    for level in logits:
        s = level.reshape(-1).sort(descending=True).values
        if s.numel() > model.rpn.pre_nms_top_n():
            n = model.rpn.pre_nms_top_n()
            gaps.append(float(s[n - 1] - s[n]))
    class_logits, _ = captured["box_pred"]
    scores = torch.softmax(class_logits, -1)[:, 1:]
    return {
        "rpn_topk_logit_gap_min": min(gaps) if gaps else math.inf,
        "box_score_thresh_distance_min": float((scores - model.roi_heads.score_thresh).abs().min()),
    }


def tv014_resized_size(h: int, w: int) -> List[int]:
    """What tv0.14's own resize would give (float32 reciprocal()*min_size scale; reference doc 2.2)."""
    t = torch.tensor([h, w])
    scale = torch.min(float(GOLDEN_CONFIG["min_size"]) / torch.min(t).to(torch.float32),
                      float(GOLDEN_CONFIG["max_size"]) / torch.max(t).to(torch.float32)).item()
    return [int(math.floor(h * scale)), int(math.floor(w * scale))]


def _json_safe(value):
    """JSON has no Infinity/NaN (JSON.parse rejects them): write null for a margin with no data."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_fixtures(out_dir: str) -> List[int]:
    os.makedirs(out_dir, exist_ok=True)
    images = [synthetic_image(h, w, seed, shapes) for h, w, seed, shapes in IMAGES]
    for i, im in enumerate(images):
        write_png(im, os.path.join(out_dir, f"image_{i}.png"))
    model_path = os.path.join(out_dir, "model.safetensors")
    model = build_golden_model(images)
    metadata = build_metadata(GOLDEN_CLASSES, eps=GOLDEN_CONFIG["eps"], min_size=GOLDEN_CONFIG["min_size"],
                              max_size=GOLDEN_CONFIG["max_size"],
                              source=f"random seed {WEIGHT_SEED}, scores calibrated on image_0/image_1 (tools/make_golden.py)")
    save_file(model.state_dict(), model_path, metadata)
    model = load_golden_model(model_path)

    counts = []
    summary = []
    for i, im in enumerate(images):
        tensors, extras = run_stages(model, im)
        if i not in FEATURE_IMAGES:  # keep the fixtures small: dense feature maps for image_0 only
            tensors = {k: v for k, v in tensors.items() if k != "input" and not k.startswith("fpn.")}
        save_file(tensors, os.path.join(out_dir, f"golden_{i}.safetensors"), {"format": "maskgpu-golden-v1"})
        with open(os.path.join(out_dir, f"golden_{i}.json"), "w") as f:
            json.dump(_json_safe({"file": f"image_{i}.png", **extras}), f, separators=(",", ":"), allow_nan=False)
            f.write("\n")
        counts.append(len(extras["detections"]))
        summary.append({"file": f"image_{i}.png", "size": [im.shape[1], im.shape[2]], "seed": IMAGES[i][2],
                        "shapes": IMAGES[i][3], "resized": extras["resized"],
                        "resized_by_tv0_14_float32_rule": tv014_resized_size(im.shape[1], im.shape[2]),
                        "padded": extras["padded"],
                        "detections": counts[-1], "proposals": extras["num_proposals"],
                        "decision_margins": extras["decision_margins"]})
    manifest = {
        "generated_by": "/usr/bin/python3 tools/make_golden.py",
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "model": {**{k: list(v) if isinstance(v, tuple) else v for k, v in GOLDEN_CONFIG.items()},
                  "classes": GOLDEN_CLASSES, "weight_seed": WEIGHT_SEED, "calibration": CALIBRATION,
                  "resize_rule": "current torchvision: float64 scale = min(min_size/min(h,w), max_size/max(h,w)); "
                                 "F.interpolate(bilinear, scale_factor=scale, recompute_scale_factor=True, "
                                 "align_corners=False) -> out = floor(in*scale)"},
        "input": "PNG uint8 RGB -> contiguous CHW float32 x/255 (true division); then normalize, resize, pad to /32 "
                 "with 0. Contiguity matters: torch's bilinear kernel for a channels-last view (e.g. straight from "
                 "torchvision.io.read_image) rounds differently (~2e-7).",
        "reproducibility": "bit-identical on regeneration with torch.set_num_threads(2) on the generating machine; "
                           "another thread count or CPU changes the float outputs at the 1e-5 level.",
        "mask_threshold": "pasted probability > 0.5, COCO uncompressed RLE, column-major, starts with the zero run",
        "nms_notes": "torchvision 0.14 batched_nms on CPU: boxes.numel() > 4000 -> per-class loop (vanilla; the result "
                     "is re-sorted by score with a non-stable sort), else the coordinate trick (boxes offset by "
                     "class * (max_coord + 1), one nms). Each golden_i.json lists its calls under nms_calls. "
                     "nms itself: stable descending sort, suppress when IoU > threshold (strict).",
        "decision_margins": "per image: how far torchvision's values sit from each hard decision (RPN top-k "
                            "logit gap at rank pre_nms_top_n, |IoU - threshold| over the comparisons NMS makes, "
                            "|softmax score - 0.05|, LevelMapper distance to a level boundary, mask pixels within "
                            "1e-4 of 0.5). A port whose float error is below a margin cannot flip that decision; "
                            "the RPN NMS margin is ~1e-5 (thousands of comparisons), so proposals may differ in a "
                            "few low-ranked boxes while the detections stay the same.",
        "images": summary,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(_json_safe(manifest), f, indent=1, allow_nan=False)
        f.write("\n")
    return counts


def write_full_size(path: str, force: bool) -> int:
    """ResNet-50-size (91 classes, 800/1333) random model with decisive scores, for manual checks."""
    if os.path.exists(path) and not force:
        raise SystemExit(f"{path} exists; pass --force to overwrite")
    model = build_maskrcnn(num_classes=91)
    check_against_reference_keys(model)
    random_init(model, WEIGHT_SEED)
    resize_current_rule(model)
    model.eval()
    image = to_model_input(synthetic_image(480, 640, 10, 5))
    calibrate_class_scores(model, [image], **CALIBRATION)
    metadata = build_metadata(COCO_CATEGORIES, eps=1e-5, min_size=800, max_size=1333,
                              source=f"random seed {WEIGHT_SEED}, full size (tools/make_golden.py --full-size)")
    save_file(model.state_dict(), path, metadata)
    with torch.no_grad():
        scores = model([image])[0]["scores"]
    n = int(scores.numel())
    print(f"wrote {path}: {sum(v.numel() for v in model.state_dict().values())} floats, "
          f"{n} detections ({int((scores > 0.5).sum())} with score > 0.5) on synthetic_image(480, 640, seed 10)")
    return n


def self_checks() -> None:
    n = check_against_reference_keys(build_maskrcnn())
    round_trip_check()
    print(f"self-checks: {n} state-dict keys match torchvision maskrcnn_resnet50_fpn; safetensors round trip ok")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=DEFAULT_OUT, help="fixture folder (default tests/fixtures/golden)")
    ap.add_argument("--full-size", metavar="OUT", help="only write a ResNet-50-size random model to OUT")
    ap.add_argument("--force", action="store_true", help="overwrite --full-size OUT")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    if args.full_size:
        write_full_size(args.full_size, args.force)
        return 0
    self_checks()
    counts = write_fixtures(args.out_dir)
    print(f"wrote {args.out_dir}: detections per image {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
