"""torchvision Mask R-CNN (maskrcnn_resnet50_fpn, v1) with configurable widths, for golden fixtures.

`build_maskrcnn()` with default arguments has exactly the module tree, state-dict key names and
shapes of torchvision's `maskrcnn_resnet50_fpn` (307 keys, FrozenBatchNorm2d everywhere in the body);
narrower arguments give the same structure with fewer channels, which is what maskgpu must run
(pruned models are just narrower ones). Everything is built from torchvision's own classes, so the
forward pass *is* torchvision's, except for `resize_current_rule()` which swaps tv0.14's float32
resize-scale rule for the rule current torchvision uses (see the reference doc, section 2.2).
"""
from __future__ import annotations

import math
import os
import types
from collections import OrderedDict
from functools import partial
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNN, MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import resize_boxes
from torchvision.models.resnet import Bottleneck
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

BLOCKS_PER_STAGE = (3, 4, 6, 3)  # ResNet-50
RESNET50_WIDTHS = (64, 128, 256, 512)
REFERENCE_KEYS_TSV = os.environ.get(
    "MASKGPU_REFERENCE_KEYS", "/work/shared/reference/maskrcnn_v1_state_dict_keys.tsv"
)

# torchvision models/_meta.py _COCO_CATEGORIES (identical in 0.14 and 0.29; reference doc appendix A).
COCO_CATEGORIES = [
    "__background__", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "N/A", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse",
    "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "N/A", "backpack", "umbrella", "N/A", "N/A",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat",
    "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle", "N/A", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza",
    "donut", "cake", "chair", "couch", "potted plant", "bed", "N/A", "dining table", "N/A", "N/A", "toilet",
    "N/A", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "N/A", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
]
assert len(COCO_CATEGORIES) == 91


class ResNetBody(nn.Module):
    """torchvision's ResNet-50 trunk (conv1/bn1/relu/maxpool/layer1..4, no avgpool/fc) with free widths.

    torchvision's ResNet hard-codes 64 stem channels and planes 64..512; this rebuilds the same
    modules under the same names with `stem` and `widths` instead. Bottleneck is torchvision's own
    ("v1.5": stride on the 3x3 conv2); downsample = Sequential(conv1x1(stride), norm) as in
    ResNet._make_layer."""

    def __init__(self, widths: Sequence[int], stem: int, norm_layer, blocks: Sequence[int] = BLOCKS_PER_STAGE):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for i, (width, count) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            out = width * Bottleneck.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out, kernel_size=1, stride=stride, bias=False), norm_layer(out)
                )
            layers = [Bottleneck(inplanes, width, stride, downsample, norm_layer=norm_layer)]
            layers += [Bottleneck(out, width, norm_layer=norm_layer) for _ in range(1, count)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
            inplanes = out
        self.out_channels = [w * Bottleneck.expansion for w in widths]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # only used through IntermediateLayerGetter
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def build_maskrcnn(
    widths: Sequence[int] = RESNET50_WIDTHS,
    stem: int = 64,
    fpn_channels: int = 256,
    representation: int = 1024,
    mask_channels: int = 256,
    num_classes: int = 91,
    min_size: int = 800,
    max_size: int = 1333,
    eps: float = 1e-5,
    **kw,
) -> MaskRCNN:
    """A torchvision MaskRCNN with maskrcnn_resnet50_fpn's exact structure and key names, but
    configurable channel counts. `eps` is the FrozenBatchNorm2d eps (torchvision's COCO_V1 weights
    need 0.0). Extra keyword arguments go to MaskRCNN (e.g. box_score_thresh)."""
    if len(widths) != 4:
        raise ValueError(f"widths must have 4 entries (layer1..layer4), got {widths}")
    norm_layer = partial(FrozenBatchNorm2d, eps=eps)
    body = ResNetBody(widths, stem, norm_layer)
    backbone = BackboneWithFPN(
        body,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=list(body.out_channels),
        out_channels=fpn_channels,
        extra_blocks=LastLevelMaxPool(),
    )
    m = mask_channels
    return MaskRCNN(
        backbone,
        num_classes=None,
        min_size=min_size,
        max_size=max_size,
        rpn_head=RPNHead(fpn_channels, 3),
        box_head=TwoMLPHead(fpn_channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes),
        mask_head=MaskRCNNHeads(fpn_channels, (m, m, m, m), 1),
        mask_predictor=MaskRCNNPredictor(m, m, num_classes),
        **kw,
    )


def set_frozen_bn_eps(model: nn.Module, eps: float) -> None:
    """Same as torchvision's _utils.overwrite_eps (needed for the COCO_V1 weights, eps 0)."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


# --- key names -------------------------------------------------------------------------------------

def _legacy_renames() -> Dict[str, str]:
    """Legacy (pre-0.13, original .pth) key -> current key; reference doc section 1.7."""
    m: Dict[str, str] = {}
    for t in ("weight", "bias"):
        for i in range(4):
            m[f"backbone.fpn.inner_blocks.{i}.{t}"] = f"backbone.fpn.inner_blocks.{i}.0.{t}"
            m[f"backbone.fpn.layer_blocks.{i}.{t}"] = f"backbone.fpn.layer_blocks.{i}.0.{t}"
            m[f"roi_heads.mask_head.mask_fcn{i + 1}.{t}"] = f"roi_heads.mask_head.{i}.0.{t}"
        m[f"rpn.head.conv.{t}"] = f"rpn.head.conv.0.0.{t}"
    return m


LEGACY_TO_CURRENT = _legacy_renames()


def to_current_names(state_dict: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    """Rename legacy keys to current ones and drop BatchNorm's num_batches_tracked (FrozenBatchNorm2d
    has no such buffer and torchvision drops it on load too)."""
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in state_dict.items():
        if k.endswith("num_batches_tracked"):
            continue
        out[LEGACY_TO_CURRENT.get(k, k)] = v
    return out


def read_reference_keys(path: str = REFERENCE_KEYS_TSV) -> List[Tuple[str, Tuple[int, ...]]]:
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                name, shape, _dtype = line.rstrip("\n").split("\t")
                rows.append((name, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return rows


def _diff(expected: Iterable[Tuple[str, Tuple[int, ...]]], actual: Iterable[Tuple[str, Tuple[int, ...]]], what: str):
    exp, act = dict(expected), dict(actual)
    problems = [f"missing {k} {exp[k]}" for k in exp if k not in act]
    problems += [f"unexpected {k} {act[k]}" for k in act if k not in exp]
    problems += [f"{k}: shape {act[k]}, expected {exp[k]}" for k in exp if k in act and exp[k] != act[k]]
    if problems:
        raise AssertionError(f"state dict differs from {what} ({len(problems)} problems):\n  " + "\n  ".join(problems[:20]))
    if list(exp) != list(act):
        raise AssertionError(f"state dict key order differs from {what}")


def check_against_reference_keys(model: nn.Module, tsv_path: Optional[str] = REFERENCE_KEYS_TSV) -> int:
    """Assert that `model` (built with default widths) has torchvision maskrcnn_resnet50_fpn's exact
    state-dict keys, order and shapes: against the reference TSV when it exists, and always against
    torchvision's own builder (weights=None; its BatchNorm2d num_batches_tracked buffers dropped).
    Returns the number of keys."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    actual = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    if tsv_path and os.path.exists(tsv_path):
        _diff(read_reference_keys(tsv_path), actual, tsv_path)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    tv_keys = [(k, tuple(v.shape)) for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")]
    _diff(tv_keys, actual, "torchvision.models.detection.maskrcnn_resnet50_fpn()")
    return len(actual)


# --- resize rule -----------------------------------------------------------------------------------

def resize_current_rule(model: MaskRCNN) -> MaskRCNN:
    """Make model.transform resize like current torchvision (eager mode): the scale is a Python
    float64 `min(min_size / min(h, w), max_size / max(h, w))`, not tv0.14's float32
    `reciprocal() * min_size` (which gives e.g. 799 instead of 800 rows for 427x640). The
    interpolate call itself is unchanged: bilinear, recompute_scale_factor=True, align_corners=False."""
    transform = model.transform

    def resize(self, image: torch.Tensor, target: Optional[Dict[str, torch.Tensor]] = None):
        h, w = image.shape[-2:]
        if self.training:
            raise RuntimeError("resize_current_rule is for inference; call model.eval() first")
        size = float(self.min_size[-1])
        scale = min(size / min(h, w), float(self.max_size) / max(h, w))
        image = F.interpolate(
            image[None], size=None, scale_factor=scale, mode="bilinear", recompute_scale_factor=True,
            align_corners=False,
        )[0]
        if target is not None and "boxes" in target:
            target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        return image, target

    transform.resize = types.MethodType(resize, transform)
    return model


def resized_size(h: int, w: int, min_size: int, max_size: int) -> Tuple[int, int]:
    """The (h, w) resize_current_rule produces (torch 1.13: floor(in * scale) per dim)."""
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return int(math.floor(h * scale)), int(math.floor(w * scale))


# --- seeded random weights -------------------------------------------------------------------------

def _normal(t: torch.Tensor, std: float, g: torch.Generator, mean: float = 0.0) -> None:
    with torch.no_grad():
        t.copy_(torch.randn(t.shape, generator=g) * std + mean)


def _uniform(t: torch.Tensor, lo: float, hi: float, g: torch.Generator) -> None:
    with torch.no_grad():
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)


def _fan_in(w: torch.Tensor, transposed: bool = False) -> int:
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    return (w.shape[0] if transposed else w.shape[1]) * receptive


def random_init(model: MaskRCNN, seed: int, cls_scale: float = 8.0, rpn_logit_std: float = 3.0,
                mask_logit_gain: float = 3.0) -> MaskRCNN:
    """Seeded random weights that make a sane, decisive network (for fixtures, not for accuracy).

    Convs/linears: He-normal on fan-in (keeps activations O(1) through the frozen-BN trunk), biases
    N(0, 0.1) so bias handling is exercised. FrozenBN: weight U(0.5,1.5), bias N(0,0.1),
    running_mean N(0,0.1), running_var U(0.5,1.5). The residual branch's last BN weight is scaled
    by 0.5 so 16 residual additions do not blow the activations up. Then:
      * rpn.head.cls_logits gets a larger std so objectness logits are spread (std ~ rpn_logit_std):
        a top-k at rank 1000 over near-equal logits would make proposals hinge on rounding;
      * rpn.head.bbox_pred / box_predictor.bbox_pred are small, so boxes stay near their anchors;
      * box_predictor.cls_score is multiplied by cls_scale so softmax scores are decisive;
      * mask_fcn_logits is scaled so mask probabilities sit far from the 0.5 threshold.
    The deterministic order (named_modules order) makes the weights a pure function of the seed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, FrozenBatchNorm2d):
                _uniform(mod.weight, 0.5, 1.5, g)
                _normal(mod.bias, 0.1, g)
                _normal(mod.running_mean, 0.1, g)
                _uniform(mod.running_var, 0.5, 1.5, g)
                if name.endswith(".bn3") or name.endswith("downsample.1"):
                    mod.weight.mul_(0.5)
            elif isinstance(mod, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
                fan = _fan_in(mod.weight, transposed=isinstance(mod, nn.ConvTranspose2d))
                _normal(mod.weight, math.sqrt(2.0 / fan), g)
                if mod.bias is not None:
                    _normal(mod.bias, 0.1, g)
        rpn = model.rpn.head
        # conv output after ReLU has E[x^2] ~ 1 per channel, so std(logit) ~ std(w) * sqrt(C).
        c = rpn.cls_logits.weight.shape[1]
        _normal(rpn.cls_logits.weight, rpn_logit_std / math.sqrt(c), g)
        _normal(rpn.cls_logits.bias, 0.5, g)
        _normal(rpn.bbox_pred.weight, 0.1 / math.sqrt(c), g)
        _normal(rpn.bbox_pred.bias, 0.05, g)
        pred = model.roi_heads.box_predictor
        r = pred.cls_score.weight.shape[1]
        _normal(pred.cls_score.weight, cls_scale / math.sqrt(r), g)
        _normal(pred.cls_score.bias, 1.0, g)
        _normal(pred.bbox_pred.weight, 1.0 / math.sqrt(r), g)
        _normal(pred.bbox_pred.bias, 0.5, g)
        model.roi_heads.mask_predictor.mask_fcn_logits.weight.mul_(mask_logit_gain)
    return model


@torch.no_grad()
def box_features(model: MaskRCNN, images: Sequence[torch.Tensor]) -> torch.Tensor:
    """fc7 outputs [K, representation] for the RPN proposals of each image (eval-mode forward)."""
    feats = []
    for image in images:
        image_list, _ = model.transform([image])
        features = model.backbone(image_list.tensors)
        proposals, _ = model.rpn(image_list, features)
        x = model.roi_heads.box_roi_pool(features, proposals, image_list.image_sizes)
        feats.append(model.roi_heads.box_head(x))
    return torch.cat(feats)


@torch.no_grad()
def calibrate_class_scores(model: MaskRCNN, images: Sequence[torch.Tensor], logit_std: float = 4.0,
                           foreground_fraction: float = 0.03) -> MaskRCNN:
    """Make the random box classifier decisive on these images (data-dependent, deterministic).

    Random fc7 features share a large common component (they are post-ReLU), so raw random class
    logits rank every proposal alike. Here each class direction w_c of cls_score is centred and
    normalised on the images' proposal features, so logit_c = logit_std * (z_c) + b_c with z_c
    ~ zero mean, unit std across proposals. The background bias is set so that only
    `foreground_fraction` of proposals have a foreground class beating background: those get
    confident scores, the rest are clear background (scores far below 0.05)."""
    x = box_features(model, images)
    cls = model.roi_heads.box_predictor.cls_score
    w = cls.weight.clone()
    mu = x.mean(0)
    z = (x - mu) @ w.t()
    sd = z.std(0).clamp_min(1e-6)
    w_new = w * (logit_std / sd)[:, None]
    b_new = -(w_new @ mu)
    logits = (x - mu) @ w_new.t()
    margin = logits[:, 1:].max(1).values - logits[:, 0]
    b_new[0] += torch.quantile(margin, 1.0 - foreground_fraction)
    cls.weight.copy_(w_new)
    cls.bias.copy_(b_new)
    return model
