#!/usr/bin/python3
"""COCO-style box/mask AP and mean matched mask IoU of torchvision's predictions on a shapes split.

    /usr/bin/python3 tools/eval_torchvision.py --weights models/maskgpu-shapes.safetensors --data data/shapes/test
    ... --predictions /tmp/tv-test.json     # also write the detections (COCO results format)
    /usr/bin/python3 tools/eval_torchvision.py --self-test   # the metrics on hand-computed cases

It runs torchvision's Mask R-CNN on the weights (F16 in the file -> F32, FrozenBN eps and min/max
size from the metadata, current torchvision's resize rule as the engine uses; torchvision's default
inference settings: score > 0.05, NMS 0.5, 100 detections, masks binarised at probability > 0.5)
and scores the detections against DIR/annotations.json, which is what the engine's
`maskgpu eval` does with its own detections, so the two can be compared number for number.

Metrics follow pycocotools (COCOeval, iscrowd 0 everywhere, area range "all", maxDets 100):
per image and category the detections are taken in descending score order and each is matched to
the unmatched ground truth with the highest IoU >= t; precision is made monotone and sampled at
101 recall points; AP averages over categories that have ground truth, AP = mean over
t = 0.50:0.05:0.95. Box IoU uses [x, y, w, h] as pycocotools (no +1). The mean matched IoU is the
mean mask IoU over the (detection, ground truth) pairs matched at t = 0.5 (all detections);
`recall50` is the fraction of ground-truth instances so matched.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_shapes_dataset import rle_decode, rle_encode  # noqa: E402

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)  # as pycocotools
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1)
MAX_DETS = 100


# --- data --------------------------------------------------------------------------------------------

def load_split(folder: str) -> Dict[str, object]:
    path = os.path.join(folder, "annotations.json")
    if not os.path.exists(path):
        raise SystemExit(f"{path} not found: make the split with tools/make_shapes_dataset.py --out DIR")
    with open(path) as f:
        return json.load(f)


def read_image(folder: str, image: Dict[str, object]) -> np.ndarray:
    from PIL import Image

    return np.array(Image.open(os.path.join(folder, image["file_name"])).convert("RGB"))


# --- IoU ---------------------------------------------------------------------------------------------

def box_iou_xywh(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """pycocotools bbox IoU (iscrowd 0) between [D,4] and [G,4] boxes in [x, y, w, h]."""
    if len(d) == 0 or len(g) == 0:
        return np.zeros((len(d), len(g)))
    dx2, dy2, gx2, gy2 = d[:, 0] + d[:, 2], d[:, 1] + d[:, 3], g[:, 0] + g[:, 2], g[:, 1] + g[:, 3]
    iw = np.clip(np.minimum(dx2[:, None], gx2[None]) - np.maximum(d[:, None, 0], g[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(dy2[:, None], gy2[None]) - np.maximum(d[:, None, 1], g[None, :, 1]), 0, None)
    inter = iw * ih
    union = (d[:, 2] * d[:, 3])[:, None] + (g[:, 2] * g[:, 3])[None] - inter
    return inter / union


def mask_iou(d: np.ndarray, g: np.ndarray) -> np.ndarray:
    """IoU between [D,H,W] and [G,H,W] boolean masks."""
    if len(d) == 0 or len(g) == 0:
        return np.zeros((len(d), len(g)))
    df = torch.from_numpy(d.reshape(len(d), -1).astype(np.float32))
    gf = torch.from_numpy(g.reshape(len(g), -1).astype(np.float32))
    inter = (df @ gf.T).numpy().astype(np.float64)
    union = df.sum(1).numpy()[:, None] + gf.sum(1).numpy()[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


# --- COCOeval ----------------------------------------------------------------------------------------

def _match(ious: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """pycocotools evaluateImg matching: [T, D] index of the matched ground truth or -1."""
    T, (D, G) = len(thresholds), ious.shape
    dt_match = -np.ones((T, D), dtype=np.int64)
    for ti, t in enumerate(thresholds):
        taken = np.zeros(G, dtype=bool)
        for di in range(D):
            best, m = min(t, 1 - 1e-10), -1
            for gi in range(G):
                if taken[gi] or ious[di, gi] < best:
                    continue
                best, m = ious[di, gi], gi
            if m >= 0:
                taken[m] = True
                dt_match[ti, di] = m
    return dt_match


def _average_precision(scores: List[np.ndarray], matched: List[np.ndarray], num_gt: int) -> np.ndarray:
    """pycocotools accumulate for one category: AP per IoU threshold ([T]), from per-image scores and
    [T, D] matched flags (detections already in per-image score order)."""
    s = np.concatenate(scores) if scores else np.zeros(0)
    m = np.concatenate(matched, axis=1) if matched else np.zeros((len(IOU_THRESHOLDS), 0), bool)
    order = np.argsort(-s, kind="mergesort")
    m = m[:, order]
    ap = np.zeros(len(IOU_THRESHOLDS))
    for ti in range(len(IOU_THRESHOLDS)):
        tp = np.cumsum(m[ti]).astype(float)
        fp = np.cumsum(~m[ti]).astype(float)
        if len(tp) == 0:
            continue
        rc = tp / num_gt
        pr = (tp / (fp + tp + np.spacing(1))).tolist()
        for i in range(len(pr) - 1, 0, -1):
            if pr[i] > pr[i - 1]:
                pr[i - 1] = pr[i]
        idx = np.searchsorted(rc, RECALL_POINTS, side="left")
        q = [pr[i] if i < len(pr) else 0.0 for i in idx]
        ap[ti] = float(np.mean(q))
    return ap


def coco_evaluate(coco: Dict[str, object], detections: Dict[int, List[Dict[str, object]]]) -> Dict[str, float]:
    """Box and mask AP (@[.5:.95], 50, 75), mean matched mask IoU at 0.5 and recall at 0.5.

    `detections[image_id]` = [{"category_id", "score", "bbox": [x,y,w,h], "mask": bool HxW}]."""
    cats = [c["id"] for c in coco["categories"]]
    gts: Dict[int, List[Dict[str, object]]] = {}
    for a in coco["annotations"]:
        gts.setdefault(a["image_id"], []).append(a)
    per_cat = {kind: {c: ([], []) for c in cats} for kind in ("bbox", "segm")}
    num_gt = {c: 0 for c in cats}
    matched_ious: List[float] = []
    for image in coco["images"]:
        iid = image["id"]
        for c in cats:
            g = [a for a in gts.get(iid, []) if a["category_id"] == c]
            d = [x for x in detections.get(iid, []) if x["category_id"] == c]
            d = sorted(d, key=lambda x: -x["score"])[:MAX_DETS]  # Python's sort is stable, like mergesort
            num_gt[c] += len(g)
            if not g and not d:
                continue
            gm = np.stack([rle_decode(a["segmentation"]) for a in g]) if g else np.zeros((0, 1, 1), bool)
            dm = np.stack([x["mask"] for x in d]) if d else np.zeros((0, 1, 1), bool)
            ious = {
                "bbox": box_iou_xywh(np.array([x["bbox"] for x in d], float).reshape(-1, 4),
                                     np.array([a["bbox"] for a in g], float).reshape(-1, 4)),
                "segm": mask_iou(dm, gm),
            }
            scores = np.array([x["score"] for x in d], float)
            for kind, iou in ious.items():
                match = _match(iou, IOU_THRESHOLDS)
                per_cat[kind][c][0].append(scores)
                per_cat[kind][c][1].append(match >= 0)
                if kind == "segm":
                    matched_ious += [float(iou[di, gi]) for di, gi in enumerate(match[0]) if gi >= 0]
    out: Dict[str, float] = {}
    for kind in ("bbox", "segm"):
        aps = np.array([_average_precision(*per_cat[kind][c], num_gt[c]) for c in cats if num_gt[c] > 0])
        prefix = "box" if kind == "bbox" else "mask"
        out[f"{prefix}AP"] = float(aps.mean())
        out[f"{prefix}AP50"] = float(aps[:, 0].mean())
        out[f"{prefix}AP75"] = float(aps[:, 5].mean())
    total_gt = sum(num_gt.values())
    out["meanIoU"] = float(np.mean(matched_ious)) if matched_ious else 0.0
    out["recall50"] = len(matched_ious) / total_gt if total_gt else 0.0
    out["instances"] = float(total_gt)
    out["detections"] = float(sum(len(v) for v in detections.values()))
    return out


def format_metrics(m: Dict[str, float]) -> str:
    return (f"mask AP {m['maskAP']:.3f} AP50 {m['maskAP50']:.3f} AP75 {m['maskAP75']:.3f} | "
            f"box AP {m['boxAP']:.3f} AP50 {m['boxAP50']:.3f} AP75 {m['boxAP75']:.3f} | "
            f"mean matched mask IoU {m['meanIoU']:.3f} (recall@0.5 {m['recall50']:.3f}, "
            f"{int(m['instances'])} instances, {int(m['detections'])} detections)")


# --- torchvision predictions -------------------------------------------------------------------------

@torch.no_grad()
def predict(model, pixels: np.ndarray) -> List[Dict[str, object]]:
    """torchvision inference on an HxWx3 uint8 image -> detections with binary masks (prob > 0.5)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 255.0
    out = model([x])[0]
    dets = []
    for box, label, score, prob in zip(out["boxes"], out["labels"], out["scores"], out["masks"]):
        x1, y1, x2, y2 = [float(v) for v in box]
        dets.append({"category_id": int(label), "score": float(score), "bbox": [x1, y1, x2 - x1, y2 - y1],
                     "box": [x1, y1, x2, y2], "mask": (prob[0] > 0.5).numpy()})
    return dets


def detections_json(out: Dict[str, torch.Tensor], classes: Optional[List[str]]) -> List[Dict[str, object]]:
    """torchvision's output for one image as `maskgpu segment`'s JSON detections (masks > 0.5, RLE)."""
    detections = []
    for box, label, score, prob in zip(out["boxes"], out["labels"], out["scores"], out["masks"]):
        label = int(label)
        detections.append({
            "box": [float(v) for v in box], "label": label,
            "labelName": classes[label] if classes and label < len(classes) else f"class_{label}",
            "score": float(score), "mask": rle_encode((prob[0] > 0.5).numpy()),
        })
    return detections


def predict_split(model, folder: str, coco: Dict[str, object], limit: Optional[int] = None):
    model.eval()
    detections: Dict[int, List[Dict[str, object]]] = {}
    for image in coco["images"][:limit]:
        detections[image["id"]] = predict(model, read_image(folder, image))
    return detections


def evaluate_model(model, folder: str, limit: Optional[int] = None) -> Dict[str, float]:
    coco = load_split(folder)
    if limit is not None:
        coco = dict(coco)
        coco["images"] = coco["images"][:limit]
        ids = {im["id"] for im in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    return coco_evaluate(coco, predict_split(model, folder, coco))


def load_torchvision_model(weights: str):
    """The safetensors file as a torchvision model (F16 -> F32), set up as the engine runs it. Every
    layer takes the width its tensors have, so pruned (compacted) files load too."""
    from check_pruned import build_from_shapes
    from safetensors_io import load_file

    tensors, meta = load_file(weights)
    model = build_from_shapes({k: v.float() for k, v in tensors.items()}, meta)
    classes = json.loads(meta["classes"]) if "classes" in meta else None
    return model, classes


def self_test() -> None:
    """Hand-computable checks of the COCO metrics and the RLE round trip."""
    from make_shapes_dataset import mask_bbox

    g1, g2, fp = (np.zeros((10, 10), bool) for _ in range(3))
    g1[0:4, 0:4], g2[6:10, 6:10], fp[0:4, 6:10] = True, True, True
    assert np.array_equal(rle_decode(rle_encode(g1)), g1) and rle_encode(g2)["counts"][0] == 66
    coco = {"images": [{"id": 1}], "categories": [{"id": 1}, {"id": 2}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": mask_bbox(g),
                             "segmentation": rle_encode(g)} for i, g in enumerate([g1, g2])]}
    dets = {1: [{"category_id": 1, "score": s, "bbox": mask_bbox(m), "mask": m}
                for s, m in [(0.9, g1), (0.8, fp), (0.7, g2)]]}
    m = coco_evaluate(coco, dets)
    # TP, FP, TP: precision 1 up to recall 0.5 (51 of the 101 points), then 2/3 (50 points);
    # category 2 has no ground truth and does not count.
    want = (51 * 1.0 + 50 * 2 / 3) / 101
    assert abs(m["maskAP"] - want) < 1e-12 and abs(m["boxAP50"] - want) < 1e-12, m
    assert m["meanIoU"] == 1.0 and m["recall50"] == 1.0
    # a detection of the wrong class is a miss and a false positive; a 4x3 box inside a 4x4 one
    # has IoU 0.75: counted for AP@0.5..0.75 (6 of 10 thresholds), not above.
    part = g1.copy()
    part[3, :] = False
    dets = {1: [{"category_id": 1, "score": 0.9, "bbox": mask_bbox(part), "mask": part},
                {"category_id": 2, "score": 0.8, "bbox": mask_bbox(g2), "mask": g2}]}
    m = coco_evaluate(coco, dets)
    assert abs(m["maskAP50"] - 51 / 101) < 1e-12 and abs(m["maskAP"] - 0.6 * 51 / 101) < 1e-12, m
    assert abs(m["meanIoU"] - 0.75) < 1e-12 and m["recall50"] == 0.5, m


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="models/maskgpu-shapes.safetensors")
    ap.add_argument("--data", default="data/shapes/test", help="split folder with annotations.json")
    ap.add_argument("--limit", type=int, help="only the first N images")
    ap.add_argument("--predictions", help="write the detections here (COCO results JSON, RLE masks)")
    ap.add_argument("--json", action="store_true", help="print the metrics as JSON")
    ap.add_argument("--self-test", action="store_true", help="check the metrics on hand-computed cases and exit")
    args = ap.parse_args(argv)
    if args.self_test:
        self_test()
        print("eval_torchvision: metric self-test ok")
        return 0
    torch.set_num_threads(2)
    model, _classes = load_torchvision_model(args.weights)
    coco = load_split(args.data)
    if args.limit is not None:
        coco["images"] = coco["images"][: args.limit]
        ids = {im["id"] for im in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
    t0 = time.time()
    dets = predict_split(model, args.data, coco)
    seconds = time.time() - t0
    metrics = coco_evaluate(coco, dets)
    if args.predictions:
        results = [{"image_id": iid, "category_id": d["category_id"], "score": d["score"], "bbox": d["bbox"],
                    "segmentation": rle_encode(d["mask"])} for iid, ds in dets.items() for d in ds]
        with open(args.predictions, "w") as f:
            json.dump(results, f)
    if args.json:
        print(json.dumps(metrics, indent=1))
    else:
        print(f"{args.data}: {len(coco['images'])} images, torchvision {seconds:.1f} s")
        print(format_metrics(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
