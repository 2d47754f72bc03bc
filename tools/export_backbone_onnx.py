#!/usr/bin/python3
"""Export a maskgpu weights file's ResNet-50-FPN backbone (body + FPN, 5 outputs) to ONNX.

    /usr/bin/python3 tools/export_backbone_onnx.py --weights models/maskgpu-shapes.safetensors \
        --height 512 --width 512 --out bench/.cache/backbone.onnx

For bench/peers.ts (npm run bench:peers), which runs it in ONNX Runtime next to maskgpu's own
backbone. The model is built as tools/eval_torchvision.py builds it (F16 -> F32, FrozenBN eps from
the metadata), so the ONNX graph computes exactly what maskgpu's ResNetFpn computes: input the
normalised, padded image [1, 3, H, W] (fixed size: what the engine's preprocess writes), outputs
`fpn0`..`fpn3` (strides 4..32) and `pool` (P5 subsampled by 2), as torchvision's
BackboneWithFPN returns them. FrozenBatchNorm2d is exported as its own mul/add (not folded); ONNX
Runtime's graph optimiser folds it, and the outputs are equal either way up to float rounding.
Opset 17, torch.onnx.export of torch 1.13 (no onnx Python package needed). The bench checks the
exported graph's outputs against maskgpu's FPN maps before it times anything.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_torchvision import load_torchvision_model  # noqa: E402

OPSET = 17
OUTPUT_NAMES = ["fpn0", "fpn1", "fpn2", "fpn3", "pool"]


class BackboneOutputs(torch.nn.Module):
    """BackboneWithFPN returns an OrderedDict; ONNX export wants a tuple in a fixed order."""

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor):
        out = self.backbone(x)
        keys = list(out.keys())
        if keys != ["0", "1", "2", "3", "pool"]:
            raise RuntimeError(f"unexpected FPN output names {keys}; expected 0..3 and pool (maskrcnn_resnet50_fpn v1)")
        return tuple(out[k] for k in keys)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="maskgpu safetensors (torchvision state-dict names)")
    ap.add_argument("--height", type=int, required=True, help="padded input height (a multiple of 32)")
    ap.add_argument("--width", type=int, required=True, help="padded input width (a multiple of 32)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.height % 32 or args.width % 32:
        raise SystemExit(f"--height {args.height} --width {args.width}: the padded input is a multiple of 32 "
                         f"(GeneralizedRCNNTransform's size_divisible); pass the padded size maskgpu reports")
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model, _ = load_torchvision_model(args.weights)
    module = BackboneOutputs(model.backbone).eval()
    x = torch.zeros(1, 3, args.height, args.width)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with torch.no_grad():
        torch.onnx.export(module, (x,), tmp, opset_version=OPSET, input_names=["input"], output_names=OUTPUT_NAMES,
                          do_constant_folding=True, export_params=True)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 2**20:.1f} MiB, opset {OPSET}, input 1x3x{args.height}x{args.width}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
