#!/usr/bin/python3
"""Full-size check: maskgpu vs torchvision on a ResNet-50-size Mask R-CNN at 800x1216.

    nice -n 10 /usr/bin/python3 tools/compare_fullsize.py [--workdir /tmp/maskgpu-fullsize] [--reuse]
        [--recipe conditioned|make-golden] [--stages] [--report report.json] [--node NODE] [--timeout S]

One command, all seeded: (1) writes (or with --reuse, reuses) full-size seeded random weights:
ResNet-50 widths, 91 COCO classes, min/max 800/1333, FrozenBN eps 1e-5, seed 0, current resize
rule (~178 MB, kept in the work folder, never committed). Recipe `conditioned` (default) is
maskrcnn_models' random_init with every head's output standardized on the test image (see
condition_heads: without it the RPN scores saturate at 1.0 and torchvision itself picks the
proposals by the order its non-stable sort gives to ties); `make-golden` is exactly
`make_golden.py --full-size`. (2) draws a synthetic 427x640 RGB image (make_golden's generator)
that resizes to 800x1199, padded 800x1216; (3) runs torchvision on it (eval, no_grad, CPU, 2
threads) stage by stage, keeping the RPN proposals and decision margins, and writes its
detections in maskgpu's JSON format (WORKDIR/torchvision.json); (4) runs `node bin/maskgpu.mjs
segment IMAGE --weights W --out WORKDIR/maskgpu --verbose`; (5) matches the two detection lists
and prints a summary (JSON with --report). --stages adds bench/fullsize-compare.ts (~1.5 min):
maskgpu's input, FPN levels, each RPN step and the box head on torchvision's proposals, each
compared with torchvision's, to say which stage differs.

Pass (exit 0) = every torchvision detection with score >= 0.5 has a maskgpu match (same label, box
IoU > 0.99, greedy in score order) whose mask IoU is > 0.98. Exit 1 otherwise or when maskgpu
fails; 2 when torch/torchvision, node or the webgpu package is missing. Why: >= 0.5 is what an application shows;
lower-scored detections of a random network hinge on decisions that float32 accumulation order
(~1e-5) may flip (the 0.05 score threshold, the 100-detection cap, near-threshold NMS) and are
reported, not failed. 0.98 is the golden test's mask bar: masks may differ only in pixels whose
probability is within rounding of 0.5, a thin and partial outline.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

try:
    import torch
    import torchvision  # noqa: F401  (make_golden needs it; fail here with a clear message)
except ImportError as e:  # pragma: no cover - environment check
    print(f"compare_fullsize: cannot import torch/torchvision ({e}). Install Debian's python3-torchvision "
          f"(apt-get install python3-torchvision) and run with /usr/bin/python3, not a pyenv python3.", file=sys.stderr)
    sys.exit(2)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_torchvision import build_metadata  # noqa: E402
from make_golden import (  # noqa: E402
    CALIBRATION, NmsRecorder, WEIGHT_SEED, _decision_margins, level_mapper_margin, rle_encode, synthetic_image,
    to_model_input, write_full_size,
)
from maskrcnn_models import (  # noqa: E402
    COCO_CATEGORIES, box_features, build_maskrcnn, calibrate_class_scores, check_against_reference_keys,
    random_init, resize_current_rule, resized_size,
)
from safetensors_io import load_file, save_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = dict(height=427, width=640, seed=10, shapes=5)  # seed 10 = make_golden's calibration image
MIN_SIZE, MAX_SIZE = 800, 1333
EXPECTED_PADDED = (800, 1216)
PASS_SCORE = 0.5
PASS_MASK_IOU = 0.98
MATCH_BOX_IOU = 0.99


class ToolMissing(Exception):
    pass


# --- 1. weights and image --------------------------------------------------------------------------

def ensure_weights(path: str, recipe: str, image_u8: torch.Tensor, reuse: bool) -> Dict[str, object]:
    if reuse and os.path.exists(path):
        return {"path": path, "recipe": recipe, "created": False, "seconds": 0.0}
    t0 = time.perf_counter()
    if recipe == "make-golden":
        write_full_size(path, force=True)
    else:
        write_conditioned(path, image_u8)
    return {"path": path, "recipe": recipe, "created": True, "seconds": time.perf_counter() - t0}


@torch.no_grad()
def _standardize(layer: torch.nn.Module, outputs: torch.Tensor, std: torch.Tensor) -> None:
    """Rescale a conv/linear so that its outputs (given as [out_channels, samples]) get zero mean
    and the given per-channel std: new = (old - mean) * s, folded into weight and bias."""
    mean, sd = outputs.mean(1), outputs.std(1).clamp_min(1e-12)
    s = std / sd
    layer.weight.mul_(s.reshape(-1, *([1] * (layer.weight.dim() - 1))))
    layer.bias.copy_((layer.bias - mean) * s)


@torch.no_grad()
def condition_heads(model, image: torch.Tensor) -> None:
    """random_init assumes O(1) activations, but through the full-width ResNet-50 + FPN they reach
    ~100: the RPN logits then have std ~45 (so ~76k anchors have sigmoid exactly 1.0 in float32
    and which proposals survive is decided by the order torch's non-stable sort gives to ties)
    and the box deltas are in the tens (degenerate, sub-pixel boxes). Standardize each head's
    outputs on this image instead: RPN logits std 1 (max ~5: no saturated scores), RPN deltas std
    0.2, box deltas std 1 (dx, dy) / 0.5 (dw, dh) before the (10, 10, 5, 5) coder weights, then
    make_golden's class-score calibration, then mask logits std 4 (blob masks, few pixels near 0.5)."""
    images, _ = model.transform([image])
    features = list(model.backbone(images.tensors).values())
    head = model.rpn.head
    t = [head.conv(f) for f in features]
    flat = lambda layer: torch.cat([layer(x).transpose(0, 1).reshape(layer.out_channels, -1) for x in t], 1)
    _standardize(head.cls_logits, flat(head.cls_logits), torch.full((head.cls_logits.out_channels,), 1.0))
    _standardize(head.bbox_pred, flat(head.bbox_pred), torch.full((head.bbox_pred.out_channels,), 0.2))
    fx = box_features(model, [image])
    bbox = model.roi_heads.box_predictor.bbox_pred
    _standardize(bbox, bbox(fx).t(), torch.tensor([1.0, 1.0, 0.5, 0.5]).repeat(bbox.out_features // 4))
    calibrate_class_scores(model, [image], **CALIBRATION)
    logits_layer = model.roi_heads.mask_predictor.mask_fcn_logits
    seen: List[torch.Tensor] = []
    hook = logits_layer.register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        model([image])
    finally:
        hook.remove()
    if seen and seen[0].shape[0]:
        _standardize(logits_layer, seen[0].transpose(0, 1).reshape(logits_layer.out_channels, -1),
                     torch.full((logits_layer.out_channels,), 4.0))


def write_conditioned(path: str, image_u8: torch.Tensor) -> None:
    model = build_maskrcnn(num_classes=91)
    check_against_reference_keys(model)
    random_init(model, WEIGHT_SEED)
    resize_current_rule(model)
    model.eval()
    condition_heads(model, to_model_input(image_u8))
    save_file(model.state_dict(), path, build_metadata(
        COCO_CATEGORIES, eps=1e-5, min_size=MIN_SIZE, max_size=MAX_SIZE,
        source=f"random seed {WEIGHT_SEED}, full size, heads standardized on synthetic_image"
               f"({IMAGE['height']}, {IMAGE['width']}, seed {IMAGE['seed']}) (tools/compare_fullsize.py)"))
    print(f"wrote {path}: {sum(v.numel() for v in model.state_dict().values())} floats (conditioned recipe)")


def load_model(path: str) -> torch.nn.Module:
    tensors, meta = load_file(path)
    if meta.get("format") != "maskgpu-maskrcnn-v1" or json.loads(meta.get("classes", "[]")) != COCO_CATEGORIES:
        raise SystemExit(f"{path} is not a 91-class maskgpu export (metadata {sorted(meta)}); delete it or run without --reuse")
    model = build_maskrcnn(num_classes=91, min_size=int(meta["min_size"]), max_size=int(meta["max_size"]),
                           eps=float(json.loads(meta["eps"])))
    model.load_state_dict(tensors, strict=True)
    resize_current_rule(model)
    return model.eval()


def make_image(path: str) -> torch.Tensor:
    from torchvision.io import write_png
    image = synthetic_image(IMAGE["height"], IMAGE["width"], IMAGE["seed"], IMAGE["shapes"])
    write_png(image, path)
    return image


# --- 2. torchvision --------------------------------------------------------------------------------

@torch.no_grad()
def run_torchvision(model, image_u8: torch.Tensor, out_dir: str) -> Dict[str, object]:
    """GeneralizedRCNN.forward's steps one by one (as make_golden.run_stages), keeping the RPN
    proposals and decision margins; then a plain timed model([x]) that must give the same result."""
    x = to_model_input(image_u8)
    original = (int(x.shape[-2]), int(x.shape[-1]))
    captured: Dict[str, object] = {}
    h1 = model.rpn.head.register_forward_hook(lambda m, i, o: captured.setdefault("rpn_head", o))
    h2 = model.roi_heads.box_predictor.register_forward_hook(lambda m, i, o: captured.setdefault("box_pred", o))
    h3 = model.roi_heads.box_head.fc6.register_forward_hook(lambda m, i, o: captured.setdefault("fc6", torch.relu(o)))
    h4 = model.roi_heads.box_head.register_forward_hook(lambda m, i, o: captured.setdefault("fc7", o))
    filter_proposals = model.rpn.filter_proposals

    get_top_n_idx = model.rpn._get_top_n_idx

    def filter_and_capture(proposals_all, objectness, image_shapes, num_anchors_per_level):
        captured.setdefault("rpn_filter_in", (proposals_all[0], objectness.reshape(-1), list(num_anchors_per_level)))
        boxes, scores = filter_proposals(proposals_all, objectness, image_shapes, num_anchors_per_level)
        captured.setdefault("proposal_scores", scores)
        return boxes, scores

    def top_n_and_capture(*args):
        idx = get_top_n_idx(*args)
        captured.setdefault("rpn_top_n_idx", idx[0])
        return idx

    model.rpn.filter_proposals = filter_and_capture
    model.rpn._get_top_n_idx = top_n_and_capture
    try:
        with NmsRecorder() as nms:
            image_list, _ = model.transform([x])
            features = model.backbone(image_list.tensors)
            nms.stage = "rpn"
            proposals, _ = model.rpn(image_list, features)
            nms.stage = "roi_heads"
            detections, _ = model.roi_heads(features, proposals, image_list.image_sizes)
            det = {k: v.clone() for k, v in detections[0].items()}
            post = model.transform.postprocess(detections, image_list.image_sizes, [original])[0]
    finally:
        del model.rpn.filter_proposals, model.rpn._get_top_n_idx
        for h in (h1, h2, h3, h4):
            h.remove()
    t0 = time.perf_counter()
    reference = model([x])[0]
    seconds = time.perf_counter() - t0
    for k in ("boxes", "scores", "labels", "masks"):
        if not torch.equal(post[k], reference[k]):
            raise AssertionError(f"step-by-step '{k}' differs from model(images); update run_torchvision")

    resized = [int(s) for s in image_list.image_sizes[0]]
    padded = [int(s) for s in image_list.tensors.shape[-2:]]
    assert tuple(resized) == resized_size(*original, MIN_SIZE, MAX_SIZE), (resized, original)
    save_file({"proposals": proposals[0], "proposal_scores": captured["proposal_scores"][0],
               "boxes": det["boxes"], "scores": det["scores"], "labels": det["labels"].to(torch.float32),
               "mask_probs": det["masks"][:, 0], "final_boxes": post["boxes"]},
              os.path.join(out_dir, "torchvision.safetensors"), {"format": "maskgpu-golden-v1"})
    near_half = ((post["masks"][:, 0] - 0.5).abs() < 1e-4).flatten(1).sum(1)
    dets = [{
        "box": [float(v) for v in post["boxes"][i]], "label": int(post["labels"][i]),
        "labelName": COCO_CATEGORIES[int(post["labels"][i])], "score": float(post["scores"][i]),
        "mask": {"size": list(original), "counts": rle_encode(post["masks"][i, 0] > 0.5)},
        "maskPixelsNearHalf": int(near_half[i]),
    } for i in range(post["boxes"].shape[0])]
    margins = {**_decision_margins(captured, model),
               "nms_iou_margin_min": min([c["iou_margin_min"] for c in nms.calls] or [math.inf]),
               "level_mapper_margin_min": min(level_mapper_margin(proposals[0]), level_mapper_margin(det["boxes"]))}
    result = {"image": {"width": original[1], "height": original[0]}, "resized": resized, "padded": padded,
              "num_proposals": int(proposals[0].shape[0]), "detections": dets, "decision_margins": margins,
              "nms_calls": [{k: v for k, v in c.items()} for c in nms.calls], "seconds": seconds,
              # for --stages (kept in memory only): the tensors bench/fullsize-compare.ts dumps
              "stage_tensors": {"input": image_list.tensors, **{f"fpn.{k}": v for k, v in features.items()},
                                "proposals": proposals[0], "tv_fc6": captured["fc6"], "tv_fc7": captured["fc7"],
                                "tv_class_logits": captured["box_pred"][0], "tv_box_regression": captured["box_pred"][1],
                                "rpn.decoded_all": captured["rpn_filter_in"][0], "rpn.objectness": captured["rpn_filter_in"][1],
                                "rpn.top_n_idx": captured["rpn_top_n_idx"]},
              "rpn_anchors_per_level": captured["rpn_filter_in"][2]}
    with open(os.path.join(out_dir, "torchvision.json"), "w") as f:
        json.dump(_json_safe({k: v for k, v in result.items() if k not in ("stage_tensors", "rpn_anchors_per_level")}), f, separators=(",", ":"), allow_nan=False)
    return result


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


# --- 3. maskgpu ------------------------------------------------------------------------------------

def run_maskgpu(node: str, image_path: str, weights: str, out_dir: str, timeout: float) -> Dict[str, object]:
    """The CLI exactly as a user runs it; its output is echoed (indented) and parsed."""
    cmd = [node, os.path.join(REPO, "bin", "maskgpu.mjs"), "segment", image_path, "--weights", weights,
           "--out", out_dir, "--verbose"]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        output, rc = proc.stdout, proc.returncode
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        output += f"\n(killed after {timeout:.0f} s; raise --timeout)"
        rc = None
    wall = time.perf_counter() - t0
    for line in output.splitlines():
        if not line.startswith("Warning: max"):  # Dawn's lavapipe limit notices
            print("    " + line)
    info: Dict[str, object] = {"command": cmd, "exit_code": rc, "wall_seconds": wall, "output": output}
    m = re.search(r"GPU memory: peak ([\d.]+) MiB", output)
    info["peak_gpu_mib"] = float(m.group(1)) if m else None
    m = re.search(r"adapter: (.*)", output)
    info["adapter"] = m.group(1).strip() if m else None
    json_path = os.path.join(out_dir, os.path.splitext(os.path.basename(image_path))[0] + ".json")
    if rc == 0 and os.path.exists(json_path):
        with open(json_path) as f:
            info["result"] = json.load(f)
    return info


# --- 3b. stages (--stages) -------------------------------------------------------------------------

def run_stage_dump(node: str, image_path: str, weights: str, workdir: str, timeout: float) -> Dict[str, object]:
    """bench/fullsize-compare.ts: maskgpu's input, FPN levels and proposals, and its box head on
    torchvision's proposals."""
    out = os.path.join(workdir, "maskgpu-stages.safetensors")
    cmd = [node, "--import", "./tools/register.mjs", os.path.join("bench", "fullsize-compare.ts"), "--weights", weights,
           "--image", image_path, "--proposals", os.path.join(workdir, "torchvision.safetensors"), "--out", out]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if not line.startswith("Warning: max"):
            print("    " + line)
    if proc.returncode != 0:
        return {"error": f"bench/fullsize-compare.ts exit {proc.returncode}", "output_tail": proc.stdout[-4000:]}
    return {"file": out, "seconds": time.perf_counter() - t0}


def compare_stages(want: Dict[str, torch.Tensor], got_path: str, anchors_per_level: Optional[List[int]] = None,
                   image_hw: Optional[List[int]] = None) -> Dict[str, object]:
    """Per tensor: max |error|, max |torchvision| and their ratio; proposals as a set (IoU > 0.99);
    box-head logits also as softmax scores and argmax agreement."""
    got, _ = load_file(got_path)
    rows: Dict[str, object] = {}
    for name in ("input", "fpn.0", "fpn.1", "fpn.2", "fpn.3", "fpn.pool", "tv_fc6", "tv_fc7", "tv_class_logits", "tv_box_regression"):
        w, g = want[name].reshape(-1).to(torch.float64), got[name].reshape(-1).to(torch.float64)
        if w.shape != g.shape:
            rows[name] = {"error": f"shape {list(got[name].shape)} vs torchvision {list(want[name].shape)}"}
            continue
        err = (w - g).abs()
        worst = int(err.argmax())
        scale = float(w.abs().max())
        rows[name] = {"max_abs_err": float(err.max()), "max_abs_ref": scale, "rel": float(err.max()) / scale if scale else None,
                      "worst_index": worst, "shape": list(want[name].shape)}
    wl, gl = want["tv_class_logits"], got["tv_class_logits"]
    rows["tv_class_scores"] = {"max_abs_err": float((torch.softmax(wl, -1) - torch.softmax(gl, -1)).abs().max()),
                               "argmax_agree": int((wl.argmax(-1) == gl.argmax(-1)).sum()), "rows": int(wl.shape[0])}
    from torchvision.ops import box_iou as box_iou_matrix
    wp, gp = want["proposals"], got["proposals"]
    iou = box_iou_matrix(wp, gp) if gp.numel() else torch.zeros(wp.shape[0], 0)
    used = torch.zeros(gp.shape[0], dtype=torch.bool)
    matched = same_rank = 0
    for p in range(wp.shape[0]):
        if p < gp.shape[0] and iou[p, p] > 0.99:
            same_rank += 1
        cand = torch.nonzero((iou[p] > 0.99) & ~used).flatten()
        if cand.numel():
            used[cand[0]] = True
            matched += 1
    rows["proposals"] = {"torchvision": int(wp.shape[0]), "maskgpu": int(gp.shape[0]), "matched": matched, "same_rank": same_rank}
    if anchors_per_level and "rpn.top_index0" in got:
        rows.update(compare_rpn_steps(want, got, anchors_per_level, image_hw))
    return rows


def compare_rpn_steps(want: Dict[str, torch.Tensor], got: Dict[str, torch.Tensor], per_level: List[int],
                      image_hw: List[int]) -> Dict[str, object]:
    """Per FPN level: objectness logits, the top-k index sets, and the decoded + clipped boxes of
    the anchors both picked; then which of maskgpu's NMS-kept candidates torchvision also kept."""
    from torchvision.ops.boxes import clip_boxes_to_image
    rows: Dict[str, object] = {}
    ks: List[int] = []
    start = 0
    top_all = want["rpn.top_n_idx"]
    offset = 0
    for li, n in enumerate(per_level):
        wl = want["rpn.objectness"][start:start + n].to(torch.float64)
        gl = got[f"rpn.scores{li}"].to(torch.float64)
        k = got[f"rpn.top_index{li}"].numel()
        ks.append(k)
        tv_idx = top_all[(top_all >= start) & (top_all < start + n)] - start
        mg_idx = got[f"rpn.top_index{li}"].to(torch.int64)
        common = sorted(set(tv_idx.tolist()) & set(mg_idx.tolist()))
        tv_boxes = clip_boxes_to_image(want["rpn.decoded_all"][start:start + n], tuple(image_hw))
        mg_pos = {int(v): j for j, v in enumerate(mg_idx.tolist())}
        mg_boxes = got["rpn.cand_boxes"][offset:offset + k]
        if common:
            c = torch.tensor(common)
            box_err = float((tv_boxes[c] - mg_boxes[torch.tensor([mg_pos[i] for i in common])]).abs().max())
        else:
            box_err = None
        top_vals_err = float((wl[tv_idx].sort(descending=True).values - got[f"rpn.top_logits{li}"].to(torch.float64)).abs().max())
        rows[f"rpn level {li}"] = {"anchors": n, "k": k, "logit_max_abs_err": float((wl - gl).abs().max()) if wl.shape == gl.shape else "shape",
                                   "topk_common": len(common), "topk_sorted_values_max_err": top_vals_err,
                                   "decoded_box_max_abs_err": box_err}
        start += n
        offset += k
    # torch's own NMS on maskgpu's candidates: a difference here is the NMS kernel's, not its inputs'.
    from torchvision.ops import batched_nms
    valid = torch.nonzero(got["rpn.cand_valid"] > 0).flatten()
    keys, lvl = got["rpn.cand_keys"], torch.cat([torch.full((n,), i) for i, n in enumerate(ks)])
    keep = valid[batched_nms(got["rpn.cand_boxes"][valid], keys[valid], lvl[valid], 0.7)]
    keep = keep[torch.sort(keys[keep], descending=True, stable=True).indices][:got["rpn.kept"].numel()]
    mg_keep = got["rpn.kept"][:int(got["rpn.kept_count"][0])].to(torch.int64)
    rows["rpn nms replay"] = {"kept": int(mg_keep.numel()), "torch_on_same_candidates": int(keep.numel()),
                              "common": len(set(keep.tolist()) & set(mg_keep.tolist())), "same_order": bool(torch.equal(keep, mg_keep))}
    return rows


def print_stages(rows: Dict[str, object]) -> None:
    print("\n--- stages: maskgpu vs torchvision (box head on torchvision's proposals) ---")
    for name, r in rows.items():
        if "error" in r:
            print(f"{name:<18}  {r['error']}")
        elif name == "proposals":
            print(f"{name:<18}  maskgpu {r['maskgpu']}, torchvision {r['torchvision']}, matched {r['matched']} (IoU > 0.99), "
                  f"same rank {r['same_rank']}")
        elif name.startswith("rpn level"):
            print(f"{name:<18}  {r['anchors']} anchors: logits max |err| {r['logit_max_abs_err']:.2e}; top-{r['k']}: "
                  f"{r['topk_common']} common, sorted values max |err| {r['topk_sorted_values_max_err']:.2e}; "
                  f"decoded boxes max |err| {_fmt(r['decoded_box_max_abs_err'], '.2e')} px")
        elif name == "rpn nms replay":
            print(f"{name:<18}  torch's batched_nms on maskgpu's own candidates keeps {r['torch_on_same_candidates']}; "
                  f"maskgpu kept {r['kept']}, {r['common']} in common, same order: {r['same_order']}")
        elif name == "tv_class_scores":
            print(f"{name:<18}  max |softmax error| {r['max_abs_err']:.2e}, argmax agrees on {r['argmax_agree']}/{r['rows']} RoIs")
        else:
            print(f"{name:<18}  max |err| {r['max_abs_err']:.3e} of max |value| {r['max_abs_ref']:.3e} "
                  f"(rel {_fmt(r['rel'], '.2e')}) {r['shape']}")


# --- 4. comparison ---------------------------------------------------------------------------------

def box_iou(a: List[float], b: List[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else float(a == b)


def rle_decode(rle: Dict[str, object]) -> torch.Tensor:
    """COCO uncompressed RLE (column-major, zero run first) -> bool [h, w]."""
    h, w = rle["size"]
    counts = torch.tensor(rle["counts"], dtype=torch.int64)
    values = (torch.arange(counts.numel()) % 2).to(torch.bool)
    flat = torch.repeat_interleave(values, counts)
    if flat.numel() != h * w:
        raise ValueError(f"RLE counts sum to {flat.numel()}, size says {h}x{w} = {h * w}")
    return flat.reshape(w, h).t()


def mask_iou(a: Dict[str, object], b: Dict[str, object]) -> float:
    if list(a["size"]) != list(b["size"]):
        return 0.0
    ma, mb = rle_decode(a), rle_decode(b)
    union = int((ma | mb).sum())
    return int((ma & mb).sum()) / union if union else 1.0


def compare(want: List[dict], got: List[dict]) -> Dict[str, object]:
    """Greedy, in torchvision's score order: each torchvision detection takes the unmatched maskgpu
    detection of the same label with the highest box IoU, if that IoU is > MATCH_BOX_IOU."""
    used = [False] * len(got)
    pairs, unmatched_tv = [], []
    for i, w in sorted(enumerate(want), key=lambda t: -t[1]["score"]):
        best, best_iou = None, MATCH_BOX_IOU
        for j, g in enumerate(got):
            if not used[j] and g["label"] == w["label"]:
                iou = box_iou(w["box"], g["box"])
                if iou > best_iou:
                    best, best_iou = j, iou
        if best is None:
            unmatched_tv.append({"index": i, "label": w["labelName"], "score": w["score"], "box": w["box"]})
            continue
        used[best] = True
        g = got[best]
        pairs.append({"tv": i, "maskgpu": best, "label": w["labelName"], "tv_score": w["score"], "maskgpu_score": g["score"],
                      "score_error": abs(g["score"] - w["score"]), "box_iou": best_iou,
                      "box_max_abs_diff": max(abs(a - b) for a, b in zip(w["box"], g["box"])),
                      "mask_iou": mask_iou(w["mask"], g["mask"]), "tv_mask_pixels_near_half": w.get("maskPixelsNearHalf")})
    unmatched_mg = [{"index": j, "label": g["labelName"], "score": g["score"], "box": g["box"]}
                    for j, g in enumerate(got) if not used[j]]
    decisive = [i for i, w in enumerate(want) if w["score"] >= PASS_SCORE]
    by_tv = {p["tv"]: p for p in pairs}
    failing = [{"index": i, "score": want[i]["score"], "label": want[i]["labelName"],
                "why": "unmatched" if i not in by_tv else f"mask IoU {by_tv[i]['mask_iou']:.4f}"}
               for i in decisive if i not in by_tv or not by_tv[i]["mask_iou"] > PASS_MASK_IOU]
    ious = [p["mask_iou"] for p in pairs]
    return {
        "torchvision_detections": len(want), "maskgpu_detections": len(got), "matched": len(pairs),
        "torchvision_score_ge_0_5": len(decisive), "maskgpu_score_ge_0_5": sum(g["score"] >= PASS_SCORE for g in got),
        "max_score_error": max([p["score_error"] for p in pairs], default=None),
        "min_box_iou": min([p["box_iou"] for p in pairs], default=None),
        "max_box_abs_diff_px": max([p["box_max_abs_diff"] for p in pairs], default=None),
        "min_mask_iou": min(ious, default=None), "mean_mask_iou": sum(ious) / len(ious) if ious else None,
        "unmatched_torchvision": unmatched_tv, "unmatched_maskgpu": unmatched_mg, "failing": failing,
        "pairs": pairs, "passed": not failing,
    }


# --- 5. summary ------------------------------------------------------------------------------------

def _fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def print_summary(r: Dict[str, object]) -> None:
    tv, mg, c = r["torchvision"], r["maskgpu"], r.get("comparison")
    print("\n=== full-size comparison: maskgpu vs torchvision ===")
    created = f", made in {r['weights']['seconds']:.0f} s" if r["weights"]["created"] else ""
    rows = [
        ("model", f"ResNet-50 FPN, 91 classes, seed {WEIGHT_SEED}, recipe {r['weights']['recipe']} "
                  f"({'created' if r['weights']['created'] else 'reused'}: {r['weights']['path']}{created})"),
        ("image", f"{r['image']['width']}x{r['image']['height']} -> resized {tv['resized'][1]}x{tv['resized'][0]}, "
                  f"padded {tv['padded'][1]}x{tv['padded'][0]} ({r['image']['path']})"),
        ("torchvision", f"{tv['num_proposals']} proposals, {tv['num_detections']} detections, "
                        f"forward {tv['seconds']:.1f} s (CPU, {torch.get_num_threads()} threads, torch {torch.__version__})"),
        ("maskgpu", f"exit {mg['exit_code']}, process {mg['wall_seconds']:.1f} s, adapter {mg.get('adapter')}"),
    ]
    if mg.get("result"):
        t = mg["result"]["timingsMs"]
        rows.append(("maskgpu segment", f"{t['total'] / 1e3:.1f} s (plan {t['plan'] / 1e3:.1f} s, gpu {t['gpu'] / 1e3:.1f} s, "
                                        f"masks {t['masks']:.0f} ms); peak GPU memory {_fmt(mg['peak_gpu_mib'], '.1f')} MiB"))
    m = tv["decision_margins"]
    rows.append(("tv margins", f"RPN top-k gap {_fmt(m.get('rpn_topk_logit_gap_min'), '.2e')}, NMS |IoU-thr| "
                               f"{_fmt(m.get('nms_iou_margin_min'), '.2e')}, |score-0.05| {_fmt(m.get('box_score_thresh_distance_min'), '.2e')}"))
    if c:
        rows += [
            ("detections", f"torchvision {c['torchvision_detections']}, maskgpu {c['maskgpu_detections']}, matched {c['matched']} "
                           f"(same label, box IoU > {MATCH_BOX_IOU})"),
            ("score >= 0.5", f"torchvision {c['torchvision_score_ge_0_5']}, maskgpu {c['maskgpu_score_ge_0_5']}"),
            ("worst score error", _fmt(c["max_score_error"], ".2e")),
            ("box", f"min IoU {_fmt(c['min_box_iou'], '.5f')}, max |coordinate diff| {_fmt(c['max_box_abs_diff_px'], '.2e')} px"),
            ("mask IoU", f"min {_fmt(c['min_mask_iou'], '.5f')}, mean {_fmt(c['mean_mask_iou'], '.5f')}"),
        ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if c:
        for what in ("unmatched_torchvision", "unmatched_maskgpu"):
            for u in c[what]:
                print(f"  {what.replace('_', ' ')}: #{u['index']} {u['label']} score {u['score']:.4f} box {[round(v, 1) for v in u['box']]}")
        for f in c["failing"]:
            print(f"  FAIL: torchvision #{f['index']} {f['label']} score {f['score']:.4f}: {f['why']}")
    verdict = "PASS" if c and c["passed"] else "FAIL"
    print(f"{verdict}: every torchvision detection with score >= {PASS_SCORE} matched with mask IoU > {PASS_MASK_IOU}"
          if verdict == "PASS" else f"{verdict}: {r.get('error') or 'see the lines above'}")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="/tmp/maskgpu-fullsize", help="weights, image and outputs (default %(default)s)")
    ap.add_argument("--reuse", action="store_true", help="reuse the weights file in WORKDIR if present")
    ap.add_argument("--recipe", choices=("conditioned", "make-golden"), default="conditioned",
                    help="conditioned (default): seeded random weights with every head standardized on the test "
                         "image; make-golden: exactly `make_golden.py --full-size` (its RPN scores saturate, see above)")
    ap.add_argument("--report", metavar="FILE", help="write the summary as JSON")
    ap.add_argument("--node", default=shutil.which("node"), help="node binary (default: node on PATH)")
    ap.add_argument("--stages", action="store_true",
                    help="also dump maskgpu's stages (bench/fullsize-compare.ts, ~1 more minute) and compare each")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds for the maskgpu process (default %(default)s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    try:
        if not args.node or not os.path.exists(args.node):
            raise ToolMissing("node not found; install Node.js >= 20 or pass --node PATH")
        if not os.path.isdir(os.path.join(REPO, "node_modules", "webgpu")):
            raise ToolMissing(f"{REPO}/node_modules/webgpu is missing; run `npm ci` in {REPO}")
    except ToolMissing as e:
        print(f"compare_fullsize: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    report: Dict[str, object] = {"workdir": args.workdir}

    image_path = os.path.join(args.workdir, "image_427x640.png")
    image = make_image(image_path)
    weights = os.path.join(args.workdir, f"fullsize-{args.recipe}.safetensors")
    report["weights"] = ensure_weights(weights, args.recipe, image, args.reuse)
    report["image"] = {"path": image_path, "width": IMAGE["width"], "height": IMAGE["height"], "seed": IMAGE["seed"]}
    print(f"torchvision: running {image_path} ...", flush=True)
    tv = run_torchvision(load_model(weights), image, args.workdir)
    if tuple(tv["padded"]) != EXPECTED_PADDED:
        print(f"warning: padded size {tv['padded']}, expected {list(EXPECTED_PADDED)}", file=sys.stderr)
    # the detections themselves (masks) stay in WORKDIR/torchvision.json; the report keeps the figures
    report["torchvision"] = {k: v for k, v in tv.items() if k not in ("nms_calls", "detections", "stage_tensors", "rpn_anchors_per_level")}
    report["torchvision"]["num_detections"] = len(tv["detections"])
    print(f"torchvision: {len(tv['detections'])} detections in {tv['seconds']:.1f} s", flush=True)

    mg = run_maskgpu(args.node, image_path, weights, os.path.join(args.workdir, "maskgpu"), args.timeout)
    report["maskgpu"] = {k: v for k, v in mg.items() if k != "output"}
    report["maskgpu"]["output_tail"] = mg["output"][-4000:]
    if mg.get("result"):
        report["comparison"] = compare(tv["detections"], mg["result"]["detections"])
        report["maskgpu"]["result"] = {k: v for k, v in mg["result"].items() if k != "detections"}
    else:
        report["error"] = f"maskgpu segment failed (exit {mg['exit_code']}); its output is above and in the report"
    if args.stages:
        dump = run_stage_dump(args.node, image_path, weights, args.workdir, args.timeout)
        report["stages"] = compare_stages(tv["stage_tensors"], dump["file"], tv["rpn_anchors_per_level"], tv["resized"]) if "file" in dump else dump
        if "file" in dump:
            print_stages(report["stages"])
    print_summary(report)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(_json_safe(report), f, indent=1, allow_nan=False)
        print(f"report: {args.report}")
    return 0 if report.get("comparison", {}).get("passed") else 1


if __name__ == "__main__":
    sys.exit(main())
