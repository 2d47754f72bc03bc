"""Load a pruned (compacted) maskgpu safetensors file into torchvision and compare with maskgpu.

A compacted file has per-layer widths (every bottleneck's conv1/conv2, each stage, the FPN, the
heads) that `build_maskrcnn` cannot express, so the model is built from torchvision's own classes
with the file's shapes: `build_maskrcnn` gives the exact module tree of maskrcnn_resnet50_fpn (v1),
then every Conv2d / ConvTranspose2d / Linear / FrozenBatchNorm2d is replaced by a fresh torchvision
module of the size the file says (same kernel, stride, padding, bias), and the state dict is loaded
strictly. The forward pass is torchvision's, unchanged (resize: current torchvision's rule, as the
golden fixtures).

    /usr/bin/python3 tools/check_pruned.py --weights pruned.safetensors --image tests/fixtures/golden/image_0.png \
        [--maskgpu out/image_0.json]   # default: runs `node bin/maskgpu.mjs segment` itself

Prints both detection lists and the match (boxes IoU > 0.99, labels, |score| < 1e-3, mask IoU > 0.98);
exit status 0 when every detection matches, 1 otherwise.

With `--masked MASKED.safetensors` (the same pruning in `--mode mask`) it also checks, in torchvision
alone, that the compacted network computes what the masked one does: the FPN maps on the kept
channels and the RPN proposals. That comparison needs no detections, which a random-weight model
pruned by 40 % (the golden one) no longer has above the 0.05 score threshold.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

import torch
from torch import nn
from torchvision.io import ImageReadMode, read_image
from torchvision.ops import box_iou
from torchvision.ops.misc import FrozenBatchNorm2d

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from maskrcnn_models import build_maskrcnn, resize_current_rule, to_current_names  # noqa: E402
from safetensors_io import load_file  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_from_shapes(state: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> nn.Module:
    """torchvision MaskRCNN (v1 structure) whose every layer has the width the state dict says."""
    sd = to_current_names(state)
    eps = float(metadata.get("eps", "1e-5"))
    num_classes = sd["roi_heads.box_predictor.cls_score.weight"].shape[0]
    model = build_maskrcnn(widths=(1, 1, 1, 1), stem=1, fpn_channels=1, representation=1, mask_channels=1,
                           num_classes=num_classes, min_size=int(metadata.get("min_size", 800)),
                           max_size=int(metadata.get("max_size", 1333)), eps=eps)
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            w = sd.get(f"{full}.weight")
            if w is None:
                continue
            if isinstance(child, nn.ConvTranspose2d):
                new = nn.ConvTranspose2d(w.shape[0], w.shape[1], child.kernel_size, child.stride, child.padding,
                                         bias=child.bias is not None)
            elif isinstance(child, nn.Conv2d):
                new = nn.Conv2d(w.shape[1], w.shape[0], child.kernel_size, child.stride, child.padding,
                                dilation=child.dilation, bias=child.bias is not None)
            elif isinstance(child, nn.Linear):
                new = nn.Linear(w.shape[1], w.shape[0], bias=child.bias is not None)
            elif isinstance(child, FrozenBatchNorm2d):
                new = FrozenBatchNorm2d(w.shape[0], eps=eps)
            else:
                continue
            setattr(parent, name, new)
    model.load_state_dict(sd, strict=True)
    resize_current_rule(model)
    return model.eval()


def rle_decode(rle: Dict) -> torch.Tensor:
    """COCO uncompressed RLE (column-major, starts with the zero run) -> bool [h, w]."""
    h, w = rle["size"]
    flat = torch.zeros(h * w, dtype=torch.bool)
    pos, value = 0, False
    for run in rle["counts"]:
        flat[pos:pos + run] = value
        pos += run
        value = not value
    return flat.reshape(w, h).t()


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum().item()
    return 1.0 if union == 0 else (a & b).sum().item() / union


def run_maskgpu(weights: str, image: str, score_thresh: float) -> Dict:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(["node", os.path.join(REPO, "bin", "maskgpu.mjs"), "segment", image, "--weights", weights,
                        "--out", out, "--score-thresh", repr(score_thresh)], check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL)
        name = os.path.splitext(os.path.basename(image))[0]
        with open(os.path.join(out, f"{name}.json")) as f:
            return json.load(f)


@torch.no_grad()
def compare_with_masked(compact: nn.Module, masked_path: str, image: torch.Tensor) -> bool:
    """FPN maps (kept channels) and RPN proposals of the compacted vs the masked model."""
    tensors, metadata = load_file(masked_path)
    masked = build_from_shapes(tensors, metadata)
    w = to_current_names(tensors)["backbone.fpn.layer_blocks.0.0.weight"]
    kept = [o for o in range(w.shape[0]) if w[o].abs().sum() > 0]
    results = []
    for m in (masked, compact):
        images, _ = m.transform([image.to(torch.float32) / 255.0])
        features = m.backbone(images.tensors)
        proposals, _ = m.rpn(images, features)
        results.append((features, proposals[0]))
    (fm, pm), (fc, pc) = results
    worst = max((fm[k][:, kept] - fc[k]).abs().max().item() for k in fm)
    scale = max(fm[k].abs().max().item() for k in fm)
    same = box_iou(pm, pc).max(1).values > 0.99 if pm.numel() and pc.numel() else torch.zeros(0, dtype=torch.bool)
    matched = int(same.sum())
    print(f"compact vs mask in torchvision: FPN maps ({len(kept)} of {w.shape[0]} channels kept) max |diff| {worst:.2e} "
          f"(values up to {scale:.2f}); RPN proposals {matched}/{pm.shape[0]} matched (IoU > 0.99), {pc.shape[0]} vs {pm.shape[0]}")
    return worst < 1e-4 * max(1.0, scale) and matched >= 0.99 * pm.shape[0] and abs(pc.shape[0] - pm.shape[0]) <= 0.01 * pm.shape[0]


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, help="a (pruned) maskgpu safetensors file")
    p.add_argument("--image", required=True, help="an RGB image (PNG/JPEG)")
    p.add_argument("--maskgpu", help="maskgpu's detection JSON for the image (default: run maskgpu segment)")
    p.add_argument("--masked", help="the same pruning in mask mode: compare compact vs mask inside torchvision")
    p.add_argument("--score-thresh", type=float, default=0.05,
                   help="box score threshold for both (default 0.05, torchvision's); a pruned random-weight model "
                        "may need a lower one to have detections to compare")
    args = p.parse_args(argv)
    torch.set_num_threads(2)

    tensors, metadata = load_file(args.weights)
    model = build_from_shapes(tensors, metadata)
    model.roi_heads.score_thresh = args.score_thresh
    widths = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.endswith("conv1.weight") and "layer" in k}
    print(f"{args.weights}: torchvision model built from the file's shapes "
          f"({sum(v.numel() for k, v in model.state_dict().items() if not k.endswith(('running_mean', 'running_var')))} values; "
          f"e.g. layer1.0.conv1 {widths.get('backbone.body.layer1.0.conv1.weight')}, "
          f"fpn {tuple(model.state_dict()['backbone.fpn.layer_blocks.0.0.weight'].shape)})")
    image = read_image(args.image, ImageReadMode.RGB).contiguous()
    with torch.no_grad():
        out = model([image.to(torch.float32) / 255.0])[0]
    result = json.load(open(args.maskgpu)) if args.maskgpu else run_maskgpu(args.weights, args.image, args.score_thresh)
    ours = result["detections"]

    n_tv = out["boxes"].shape[0]
    print(f"torchvision: {n_tv} detections; maskgpu: {len(ours)}")
    ok = n_tv == len(ours)
    worst_box, worst_mask, worst_score = 1.0, 1.0, 0.0
    for i in range(min(n_tv, len(ours))):
        d = ours[i]
        tb = out["boxes"][i]
        iou = box_iou(tb[None], torch.tensor(d["box"])[None]).item()
        m_tv = out["masks"][i, 0] > 0.5
        m_ours = rle_decode(d["mask"])
        miou = mask_iou(m_tv, m_ours)
        ds = abs(out["scores"][i].item() - d["score"])
        label_ok = int(out["labels"][i]) == d["label"]
        worst_box, worst_mask, worst_score = min(worst_box, iou), min(worst_mask, miou), max(worst_score, ds)
        good = iou > 0.99 and label_ok and ds < 1e-3 and miou > 0.98
        ok = ok and good
        print(f"  {i:3d} label {int(out['labels'][i])}/{d['label']} score {out['scores'][i].item():.4f}/{d['score']:.4f} "
              f"box IoU {iou:.5f} mask IoU {miou:.4f}{'' if good else '  MISMATCH'}")
    if args.masked:
        ok = compare_with_masked(model, args.masked, image) and ok
    print(f"{'MATCH' if ok else 'MISMATCH'}: worst box IoU {worst_box:.5f}, worst |score diff| {worst_score:.2e}, "
          f"worst mask IoU {worst_mask:.5f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
