#!/usr/bin/python3
"""Train maskgpu's bundled model: a narrow torchvision Mask R-CNN (maskrcnn_resnet50_fpn v1 structure,
same state-dict keys) from scratch on the synthetic shapes data, on the CPU, and export it as F16
safetensors for the engine.

    /usr/bin/python3 tools/make_shapes_dataset.py --out data/shapes --splits train   # 3000 images, 4-8 min
    nice -n 10 /usr/bin/python3 tools/train.py --data data/shapes --export models/maskgpu-shapes.safetensors

Why it is built this way:
* The trunk's norm layers are FrozenBatchNorm2d in torchvision's structure (and in the engine, which
  folds them into the convs). A 16-block ResNet trained from scratch needs real normalisation, so
  training swaps every FrozenBatchNorm2d for an nn.BatchNorm2d (eps 1e-5, batch statistics over the
  padded batch), and export writes gamma, beta and the running statistics back under the same keys:
  FrozenBatchNorm2d(x) = (x - running_mean) / sqrt(running_var + eps) * weight + bias is exactly
  BatchNorm2d in eval mode. Before export the running statistics are re-estimated over
  --bn-images training images with the final weights ("precise BN"): the momentum-0.1 averages
  lag behind the weights while the learning rate is still large.
* Init: trunk convs He-normal (fan_out) and BN gamma 1 / beta 0 as torchvision's ResNet, with the
  last BN of each residual branch at gamma 0 (zero_init_residual: every block starts as the
  identity, which lets a deep trunk train from scratch); FPN, RPN and RoI heads keep
  torchvision's own initialisation.
* AdamW with linear warm-up and cosine decay to 1 % (iteration-based, so a run is reproducible);
  weight decay on conv/linear weights only; gradient norm clipped at 10. Augmentation: the 8
  flips/transposes of the square (every class is symmetric under them). Training-only RPN/RoI
  sampling settings are reduced for speed (they are not part of the weights; the engine runs
  torchvision's inference defaults).
* `--minutes` is a wall-clock budget: when it runs out the loop stops early (the cosine schedule
  is then cut short) and the model is finalised and exported anyway. A checkpoint is written every
  --ckpt-every iterations and at the end; --resume continues from one.

At the end the exported file is read back (F16 -> F32) into a fresh torchvision model and evaluated
on the val split (tools/eval_torchvision.py metrics: COCO box/mask AP and mean matched mask IoU).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from eval_torchvision import evaluate_model, format_metrics, load_split, load_torchvision_model, read_image  # noqa: E402
from export_torchvision import build_metadata, parse_ints  # noqa: E402
from make_shapes_dataset import CLASSES, rle_decode  # noqa: E402
from maskrcnn_models import build_maskrcnn  # noqa: E402
from safetensors_io import save_file  # noqa: E402

BN_EPS = 1e-5
TRAIN_SETTINGS = dict(  # training-time sampling only: not stored in the weights
    rpn_pre_nms_top_n_train=1000,
    rpn_post_nms_top_n_train=500,
    box_batch_size_per_image=64,
)


# --- model -------------------------------------------------------------------------------------------

def _swap_norms(module: nn.Module, eps: float = BN_EPS) -> None:
    for name, child in module.named_children():
        if isinstance(child, FrozenBatchNorm2d):
            setattr(module, name, nn.BatchNorm2d(child.weight.numel(), eps=eps))
        else:
            _swap_norms(child, eps)


def make_trainable(model: nn.Module, eps: float = BN_EPS) -> nn.Module:
    """The trunk's FrozenBatchNorm2d -> nn.BatchNorm2d with the same gamma, beta and running
    statistics, and the mask deconv's forward as a matmul (both explained above)."""
    body = model.backbone.body
    values = body.state_dict()
    _swap_norms(body, eps)
    missing, unexpected = body.load_state_dict(values, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    deconv = model.roi_heads.mask_predictor.conv5_mask
    assert deconv.kernel_size == (2, 2) and deconv.stride == (2, 2) and deconv.padding == (0, 0)
    deconv.forward = _deconv2x2_as_matmul(deconv)
    return model


def build_trainable(args) -> nn.Module:
    model = build_maskrcnn(widths=parse_ints(args.widths, 4, "widths"), stem=args.stem, fpn_channels=args.fpn,
                           representation=args.rep, mask_channels=args.mask, num_classes=len(CLASSES),
                           min_size=args.min_size, max_size=args.max_size, eps=BN_EPS, **TRAIN_SETTINGS)
    make_trainable(model)
    for name, mod in model.backbone.body.named_modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.constant_(mod.weight, 0.0 if name.endswith(".bn3") else 1.0)
            nn.init.zeros_(mod.bias)
    return model


def _deconv2x2_as_matmul(module: nn.ConvTranspose2d):
    """Forward of mask_predictor.conv5_mask (ConvTranspose2d, kernel 2, stride 2) as one matmul: each
    input pixel maps to its own 2x2 output block. Same parameters and result; torch 1.13's CPU
    slow_conv_transpose2d backward is ~7x slower than this and was the costliest op of a step."""
    def forward(x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        o = module.weight.shape[1]
        y = x.permute(0, 2, 3, 1).reshape(-1, c) @ module.weight.reshape(c, o * 4)
        y = y.reshape(n, h, w, o, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, o, 2 * h, 2 * w)
        return y + module.bias[None, :, None, None]
    return forward


def frozen_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The trained model's state dict under torchvision's FrozenBatchNorm2d keys (checked strictly)."""
    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    return sd


@torch.no_grad()
def precise_bn(model: nn.Module, data: "ShapesData", count: int, batch: int, rng: np.random.Generator) -> None:
    """Re-estimate the trunk's BN running statistics as exact averages over `count` training images."""
    bns = [m for m in model.backbone.body.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    idx = rng.permutation(len(data))[:count]
    for s in range(0, len(idx), batch):
        landscape = bool(rng.random() < 0.5)
        images = [data.sample(int(i), rng, landscape)[0] for i in idx[s: s + batch]]
        tensors = model.transform(images)[0].tensors
        model.backbone.body(tensors)
    for bn in bns:
        bn.momentum = 0.1
    model.eval()


# --- data --------------------------------------------------------------------------------------------

class ShapesData:
    """A COCO split held in memory (decoded PNGs and RLE), sampled with the 8 symmetries of the square."""

    def __init__(self, folder: str):
        self.folder = folder
        self.coco = load_split(folder)
        by_image: Dict[int, List[Dict[str, object]]] = {}
        for a in self.coco["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        self.items = [(im, by_image.get(im["id"], [])) for im in self.coco["images"]]
        self.pixels = [read_image(folder, im) for im, _ in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, i: int, rng: np.random.Generator, landscape: bool) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Image i, transposed if needed to the batch's orientation (a batch is padded to its largest
        height and width: mixing orientations would pad ~2x the pixels), randomly flipped."""
        img = self.pixels[i]
        anns = self.items[i][1]
        masks = np.stack([rle_decode(a["segmentation"]) for a in anns]) if anns else np.zeros((0,) + img.shape[:2], bool)
        k = int(rng.integers(4))
        if (img.shape[1] >= img.shape[0]) != landscape:
            img, masks = img.transpose(1, 0, 2), masks.transpose(0, 2, 1)
        if k & 1:
            img, masks = img[:, ::-1], masks[:, :, ::-1]
        if k & 2:
            img, masks = img[::-1], masks[:, ::-1]
        boxes = np.zeros((len(masks), 4), np.float32)
        for j, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            boxes[j] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255.0
        target = {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(np.ascontiguousarray(masks)).to(torch.uint8),
        }
        return x, target


# --- training ----------------------------------------------------------------------------------------

def lr_at(it: int, args, time_fraction: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to 1 % over max(iteration / iters, elapsed / budget): on a
    machine fast enough to do --iters within --minutes the schedule is purely iteration-based
    (reproducible); on a slower or busier one it is compressed so training still anneals in time."""
    warm = min(1.0, (it + 1) / args.warmup) if args.warmup > 0 else 1.0
    progress = min(1.0, max(it / args.iters, time_fraction))
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return args.lr * warm * (0.01 + 0.99 * cosine)


def make_optimizer(model: nn.Module, args) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() > 1 else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=args.lr, betas=(0.9, 0.999))


def save_checkpoint(path: str, model, opt, it: int, rng: np.random.Generator, args, seconds: float) -> None:
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": it,
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "args": vars(args),
                "train_seconds": seconds}, tmp)
    os.replace(tmp, path)


def export(model: nn.Module, args, source: str) -> None:
    state = frozen_state_dict(model)
    check = build_maskrcnn(min_size=args.min_size, max_size=args.max_size, eps=BN_EPS,
                           widths=parse_ints(args.widths, 4, "widths"), stem=args.stem, fpn_channels=args.fpn,
                           representation=args.rep, mask_channels=args.mask, num_classes=len(CLASSES))
    check.load_state_dict(state, strict=True)  # exactly torchvision's keys and shapes
    write_weights(state, args.export, build_metadata(CLASSES, BN_EPS, args.min_size, args.max_size, source),
                  torch.float16)


def write_weights(state: Dict[str, torch.Tensor], path: str, metadata: Dict[str, str], dtype: torch.dtype) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(state, path, metadata, dtype=dtype)
    kind = {torch.float16: "F16", torch.float32: "F32", torch.bfloat16: "BF16"}.get(dtype, str(dtype))
    print(f"wrote {path}: {len(state)} tensors, {sum(v.numel() for v in state.values())} values ({kind}), "
          f"{os.path.getsize(path) / 1e6:.2f} MB", flush=True)


def train_loop(model: nn.Module, opt: torch.optim.Optimizer, train: ShapesData, args, rng: np.random.Generator,
               start: int = 0, spent: float = 0.0, val_dir: Optional[str] = None) -> Tuple[int, float]:
    """Iterations start..args.iters (or until args.minutes run out): batches of args.batch shuffled
    training images, lr_at's schedule, gradient clipping, logs, checkpoints in args.work and, with
    args.eval_every, a quick val eval. Returns (iterations done, training seconds)."""
    ckpt = os.path.join(args.work, "last.pt")
    order = np.zeros(0, dtype=np.int64)
    t0 = time.time() - spent
    sums: Dict[str, float] = {}
    it = start
    model.train()
    while it < args.iters:
        time_fraction = (time.time() - t0) / (args.minutes * 60)
        if time_fraction >= 1.0:
            print(f"time budget of {args.minutes} min reached at iteration {it}/{args.iters}", flush=True)
            break
        if len(order) < args.batch:
            order = np.concatenate([order, rng.permutation(len(train))])
        idx, order = order[: args.batch], order[args.batch:]
        landscape = bool(rng.random() < 0.5)
        batch = [train.sample(int(i), rng, landscape) for i in idx]
        for g in opt.param_groups:
            g["lr"] = lr_at(it, args, time_fraction)
        losses = model([b[0] for b in batch], [b[1] for b in batch])
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise SystemExit(f"loss is {loss.item()} at iteration {it}: lower --lr or raise --warmup")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        it += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        if it % args.log_every == 0 or it == args.iters:
            el = time.time() - t0
            n = args.log_every
            parts = " ".join(f"{k.replace('loss_', '')} {v / n:.3f}" for k, v in sums.items())
            print(f"it {it}/{args.iters} loss {sum(sums.values()) / n:.3f} ({parts}) lr {opt.param_groups[0]['lr']:.2e} "
                  f"{el / 60:.1f} min, {el / max(it - start, 1):.2f} s/it", flush=True)
            sums = {}
        if it % args.ckpt_every == 0:
            save_checkpoint(ckpt, model, opt, it, rng, args, time.time() - t0)
        if args.eval_every and val_dir and it % args.eval_every == 0 and it < args.iters:
            model.eval()
            m = evaluate_model(model, val_dir, limit=50)
            print(f"  val[50] @ {it}: {format_metrics(m)}", flush=True)
            model.train()
    train_seconds = time.time() - t0
    save_checkpoint(ckpt, model, opt, it, rng, args, train_seconds)
    print(f"training: {it} iterations in {train_seconds / 60:.1f} min", flush=True)
    return it, train_seconds


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/shapes", help="dataset folder with train/ and val/")
    ap.add_argument("--export", default="models/maskgpu-shapes.safetensors")
    ap.add_argument("--work", default="/tmp/maskgpu-train", help="checkpoints and logs")
    ap.add_argument("--iters", type=int, default=2800)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--clip", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=40.0, help="wall-clock budget for the training loop (see lr_at)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", default="16,32,64,128")
    ap.add_argument("--stem", type=int, default=16)
    ap.add_argument("--fpn", type=int, default=32)
    ap.add_argument("--rep", type=int, default=256)
    ap.add_argument("--mask", type=int, default=64)
    ap.add_argument("--min-size", type=int, default=320)
    ap.add_argument("--max-size", type=int, default=512)
    ap.add_argument("--bn-images", type=int, default=200)
    ap.add_argument("--ckpt-every", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=0, help="quick val eval (first 50 images) every N iterations")
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--resume", help="checkpoint to continue from")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.work, exist_ok=True)
    t_load = time.time()
    train = ShapesData(os.path.join(args.data, "train"))
    val_dir = os.path.join(args.data, "val")
    n_inst = len(train.coco["annotations"])
    print(f"train: {len(train)} images, {n_inst} instances (loaded in {time.time() - t_load:.0f} s)", flush=True)

    model = build_trainable(args)
    n_params = sum(p.numel() for p in model.state_dict().values() if p.is_floating_point())
    print(f"model: widths {args.widths} stem {args.stem} fpn {args.fpn} rep {args.rep} mask {args.mask}, "
          f"{n_params / 1e6:.2f} M values ({2 * n_params / 1e6:.1f} MB as F16)", flush=True)
    opt = make_optimizer(model, args)
    start, spent = 0, 0.0
    if args.resume:
        ck = torch.load(args.resume, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start, spent = int(ck["iteration"]), float(ck.get("train_seconds", 0.0))
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed from {args.resume} at iteration {start}", flush=True)

    it, train_seconds = train_loop(model, opt, train, args, rng, start, spent, val_dir)

    precise_bn(model, train, args.bn_images, args.batch, np.random.default_rng(args.seed + 1))
    source = (f"tools/train.py on tools/make_shapes_dataset.py shapes: {it} iterations x {args.batch} images, "
              f"seed {args.seed}")
    export(model, args, source)
    tv, _ = load_torchvision_model(args.export)
    metrics = evaluate_model(tv, val_dir)
    print(f"val (exported F16 weights, torchvision): {format_metrics(metrics)}", flush=True)
    with open(os.path.join(args.work, "metrics.json"), "w") as f:
        json.dump({"val": metrics, "iterations": it, "train_minutes": train_seconds / 60, "args": vars(args)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
