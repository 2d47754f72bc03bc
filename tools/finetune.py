#!/usr/bin/python3
"""Fine-tune a pruned (compacted) maskgpu Mask R-CNN for a short while on the shapes training data,
keeping its narrower shapes, and write it back as safetensors the engine loads.

    npx maskgpu prune --weights models/maskgpu-shapes.safetensors --ratio 0.4 --normalize mean --out /tmp/p40.safetensors
    nice -n 10 /usr/bin/python3 tools/finetune.py --weights /tmp/p40.safetensors --out /tmp/p40-ft.safetensors \\
        --iters 300 --minutes 8
    npx maskgpu eval --weights /tmp/p40-ft.safetensors

How (everything but the model building is tools/train.py's):
* The model is torchvision's, built with every layer at the width the file says
  (tools/check_pruned.py's build_from_shapes), then made trainable as train.py does: the trunk's
  FrozenBatchNorm2d become BatchNorm2d holding the file's gamma, beta and statistics (eps from the
  metadata), and train.py's training-only RPN/RoI sampling settings.
* Pruning leaves the statistics of every BN whose input lost channels stale (compensation only
  moves constants into them). Training normalises with batch statistics anyway, and at the end
  train.py's precise BN re-estimates them over --bn-images training images; `--iters 0` does only
  that, which shows how much is recovered without any gradient step.
* train.py's loop: same augmentation, losses, AdamW (weight decay on weights only), gradient clipping,
  warm-up and cosine decay to 1 %, but a smaller peak lr by default (the weights start trained) and
  a short --iters / --minutes budget (lr_at compresses the schedule into the budget).
* Weight kernels that are all zero in the input (a carrier channel's producer, `--mode mask` or
  `--granularity kernel` files) get their gradients masked, so they stay zero: the network keeps
  the structure pruning gave it.
* Export: the FrozenBN keys again, checked to have exactly the input's names and shapes, in the
  input's float type (F16 for the bundled model), with the input's metadata plus `finetune`
  (JSON: source file, iterations, seconds, settings).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_pruned import build_from_shapes  # noqa: E402
from eval_torchvision import evaluate_model, format_metrics  # noqa: E402
from maskrcnn_models import to_current_names  # noqa: E402
from safetensors_io import load_file  # noqa: E402
from train import (TRAIN_SETTINGS, ShapesData, frozen_state_dict, make_optimizer, make_trainable,  # noqa: E402
                   precise_bn, train_loop, write_weights)


def float_dtype(tensors: Dict[str, torch.Tensor]) -> torch.dtype:
    kinds = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(kinds) != 1:
        raise SystemExit(f"expected one float type in the weights, found {sorted(map(str, kinds))}")
    return kinds.pop()


def apply_train_settings(model: nn.Module) -> None:
    """train.py's TRAIN_SETTINGS on an already built model (build_from_shapes takes no MaskRCNN kwargs)."""
    model.rpn._pre_nms_top_n["training"] = TRAIN_SETTINGS["rpn_pre_nms_top_n_train"]
    model.rpn._post_nms_top_n["training"] = TRAIN_SETTINGS["rpn_post_nms_top_n_train"]
    model.roi_heads.fg_bg_sampler.batch_size_per_image = TRAIN_SETTINGS["box_batch_size_per_image"]


def keep_zero_kernels(model: nn.Module) -> int:
    """Masks the gradient of every all-zero kernel (conv: one k x k slice, linear: one weight), so
    that AdamW (zero gradient, decoupled decay of 0) leaves it at zero. Returns how many."""
    frozen = 0
    for mod in model.modules():
        if not isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            continue
        w = mod.weight
        live = (w.detach().reshape(w.shape[0], w.shape[1], -1).abs().sum(-1) != 0)
        if bool(live.all()):
            continue
        frozen += int((~live).sum())
        mask = live.to(w.dtype).reshape(w.shape[:2] + (1,) * (w.dim() - 2))
        w.register_hook(lambda g, m=mask: g * m)
    return frozen


def check_same_layout(state: Dict[str, torch.Tensor], source: Dict[str, torch.Tensor]) -> None:
    want = {k: tuple(v.shape) for k, v in to_current_names(source).items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if want != got:
        diff = sorted(set(want.items()) ^ set(got.items()))[:5]
        raise SystemExit(f"internal error: fine-tuned state differs from the input's names/shapes, e.g. {diff}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="pruned (compacted) maskgpu safetensors file")
    ap.add_argument("--out", required=True, help="fine-tuned safetensors file to write")
    ap.add_argument("--data", default="data/shapes", help="dataset folder with train/ (and val/ for --val)")
    ap.add_argument("--iters", type=int, default=300, help="0: precise BN only")
    ap.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget for the loop (see train.lr_at)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-4, help="peak lr (train.py trains from scratch at 1.5e-3)")
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--clip", type=float, default=10.0)
    ap.add_argument("--bn-images", type=int, default=200, help="training images for the final precise BN")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val", type=int, default=0, help="also evaluate before/after in torchvision on the first N val images")
    ap.add_argument("--work", default="/tmp/maskgpu-finetune", help="checkpoint folder")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = ap.parse_args(argv)
    args.ckpt_every, args.eval_every = max(args.iters, 1), 0  # train_loop's: one checkpoint at the end
    if os.path.exists(args.out) and not args.force:
        raise SystemExit(f"{args.out} exists: pass --force to replace it")
    if os.path.abspath(args.out) == os.path.abspath(args.weights):
        raise SystemExit("--out is the input file: write the fine-tuned model elsewhere")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.work, exist_ok=True)
    val_dir = os.path.join(args.data, "val")

    tensors, metadata = load_file(args.weights)
    dtype = float_dtype(tensors)
    eps = float(json.loads(metadata.get("eps", "1e-5")))
    model = build_from_shapes({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, metadata)
    n_values = sum(v.numel() for v in tensors.values())
    pruning = json.loads(metadata["pruning"]) if "pruning" in metadata else None
    print(f"{args.weights}: {n_values / 1e6:.3f} M values ({str(dtype).replace('torch.', '')}), "
          f"{'pruned: ' + json.dumps(pruning.get('options', {})) if pruning else 'no pruning metadata'}", flush=True)
    if args.val:
        print(f"val[{args.val}] before (torchvision): {format_metrics(evaluate_model(model, val_dir, limit=args.val))}",
              flush=True)

    t_load = time.time()
    train = ShapesData(os.path.join(args.data, "train"))
    print(f"train: {len(train)} images (loaded in {time.time() - t_load:.0f} s)", flush=True)

    apply_train_settings(model)
    # build_from_shapes patches in the engine's inference resize rule, which refuses training mode:
    # training and precise BN resize as train.py does (torchvision 0.14's own rule)
    del model.transform.resize
    make_trainable(model, eps)
    zeros = keep_zero_kernels(model)
    if zeros:
        print(f"{zeros} all-zero kernels kept at zero", flush=True)
    opt = make_optimizer(model, args)
    it, seconds = train_loop(model, opt, train, args, rng)
    t_bn = time.time()
    precise_bn(model, train, args.bn_images, args.batch, np.random.default_rng(args.seed + 1))
    print(f"precise BN over {args.bn_images} images: {time.time() - t_bn:.0f} s", flush=True)

    state = frozen_state_dict(model)
    check_same_layout(state, tensors)
    record = {"source": os.path.basename(args.weights), "iterations": it, "batch": args.batch, "lr": args.lr,
              "warmup": args.warmup, "seed": args.seed, "bn_images": args.bn_images,
              "train_minutes": round(seconds / 60, 2), "tool": "tools/finetune.py"}
    write_weights(state, args.out, {**metadata, "finetune": json.dumps(record)}, dtype)
    if args.val:
        tuned, meta = load_file(args.out)
        back = build_from_shapes({k: v.float() for k, v in tuned.items()}, meta)
        print(f"val[{args.val}] after (exported, torchvision): {format_metrics(evaluate_model(back, val_dir, limit=args.val))}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
