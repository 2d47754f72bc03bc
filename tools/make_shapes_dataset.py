#!/usr/bin/python3
"""Seeded synthetic instance-segmentation data ("shapes") in COCO format, for the bundled model.

    /usr/bin/python3 tools/make_shapes_dataset.py --out data/shapes            # val + test (committed)
    /usr/bin/python3 tools/make_shapes_dataset.py --out data/shapes --splits train --count 3000

Each split is DIR/<split>/images/*.png + DIR/<split>/annotations.json. Classes (COCO category ids
1..6, the model's labels): circle, square, triangle, star, ring, ellipse. Every image has its own
size and aspect (sides 160..320 px), a textured background (gradients, low-frequency blotches,
stripes, pixel noise), 1..8 instances of random size (10 px up to ~0.62 x the short side, log-uniform),
rotation, colour and texture, and distractors that belong to no class (thick lines, zig-zags,
irregular blobs, dots). Things are painted in a random z-order and overlap: an instance's mask is
its *visible* part (a ring's hole shows what is below it). Placement is retried so that no instance
keeps less than 30 % of its area; instances under 15 % visible (border truncation) or under 20 px
are then not annotated. A final slight blur softens the binary edges of the paint.

Annotations: {images, annotations, categories}; an annotation has bbox [x, y, w, h] of the visible
pixels (w = x_max - x_min + 1, as pycocotools' toBbox), area = visible pixel count, iscrowd 0 and
segmentation = uncompressed RLE {"size": [h, w], "counts": [...]}, column-major, starting with the
zero run. Splits use different seeds (train 1, val 2, test 3 by default), and image i of a split is
a pure function of (split seed, i), so any prefix of a split is reproducible.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CLASSES = ["__background__", "circle", "square", "triangle", "star", "ring", "ellipse"]
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}
DEFAULT_COUNTS = {"train": 3000, "val": 100, "test": 100}

MIN_SIDE, MAX_SIDE = 160, 320
MIN_SHAPE = 10                 # px, circumscribed diameter
MAX_SHAPE_FRACTION = 0.62      # of the image's short side (200 px for a 320 px side)
KEEP_VISIBLE_WHILE_PLACING = 0.30
MIN_VISIBLE_FRACTION = 0.15
MIN_VISIBLE_PIXELS = 20
GRAIN_PROBABILITY = 0.35
MIN_COLOUR_DISTANCE = 70.0     # RGB L2 between a shape and what it is painted over


# --- geometry: each returns a boolean mask on a local canvas plus its top-left offset ----------------

def _polygon_mask(points: np.ndarray, cx: float, cy: float) -> Tuple[np.ndarray, int, int]:
    """Rasterise a polygon (local coordinates around (0,0)) centred at (cx, cy) on a tight local canvas."""
    x0 = int(math.floor(cx + points[:, 0].min())) - 1
    y0 = int(math.floor(cy + points[:, 1].min())) - 1
    x1 = int(math.ceil(cx + points[:, 0].max())) + 2
    y1 = int(math.ceil(cy + points[:, 1].max())) + 2
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    pts = [(float(px + cx - x0), float(py + cy - y0)) for px, py in points]
    ImageDraw.Draw(canvas).polygon(pts, fill=1)
    return np.asarray(canvas, dtype=bool), x0, y0


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    t = phase + np.arange(n) * (2 * math.pi / n)
    return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)


def _ellipse_points(a: float, b: float, angle: float, n: int = 72) -> np.ndarray:
    t = np.arange(n) * (2 * math.pi / n)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([c * x - s * y, s * x + c * y], axis=1)


def shape_mask(kind: str, d: float, cx: float, cy: float, rng: np.random.Generator):
    """Mask of class `kind` with circumscribed diameter `d` centred at (cx, cy): (mask, x0, y0)."""
    r = d / 2
    angle = rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        return _polygon_mask(_ellipse_points(r, r, 0.0, 96), cx, cy)
    if kind == "square":
        return _polygon_mask(_regular(4, r, angle), cx, cy)
    if kind == "triangle":
        # roughly equilateral, vertices jittered so triangles are not all congruent
        t = angle + np.arange(3) * (2 * math.pi / 3) + rng.uniform(-0.25, 0.25, 3)
        rad = r * rng.uniform(0.85, 1.0, 3)
        return _polygon_mask(np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1), cx, cy)
    if kind == "star":
        inner = rng.uniform(0.38, 0.5)
        outer_pts = _regular(5, r, angle)
        inner_pts = _regular(5, r * inner, angle + math.pi / 5)
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer_pts, inner_pts
        return _polygon_mask(pts, cx, cy)
    if kind == "ring":
        outer, x0, y0 = _polygon_mask(_ellipse_points(r, r, 0.0, 96), cx, cy)
        hole, hx0, hy0 = _polygon_mask(_ellipse_points(*(2 * [r * rng.uniform(0.45, 0.68)]), 0.0, 96), cx, cy)
        out = outer.copy()
        out[hy0 - y0: hy0 - y0 + hole.shape[0], hx0 - x0: hx0 - x0 + hole.shape[1]] &= ~hole
        return out, x0, y0
    if kind == "ellipse":
        b = r * rng.uniform(0.35, 0.62)  # clearly not a circle
        return _polygon_mask(_ellipse_points(r, b, angle), cx, cy)
    raise ValueError(f"unknown shape kind {kind!r}")


# --- appearance --------------------------------------------------------------------------------------

def _smooth_field(h: int, w: int, rng: np.random.Generator, cells: Tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [-1, 1]-ish: a tiny random grid upsampled bicubically."""
    small = rng.normal(0, 1, (cells[0], cells[1])).astype(np.float32)
    return np.asarray(Image.fromarray(small, mode="F").resize((w, h), Image.BICUBIC), dtype=np.float32)


def _stripes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, math.pi)
    period = rng.uniform(6, 30)
    wave = np.sin((x * math.cos(t) + y * math.sin(t)) * (2 * math.pi / period))
    return np.sign(wave) if rng.random() < 0.5 else wave  # hard bars or soft waves


def background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A float32 HxWx3 background: base colour + gradient + blotches (+ stripes / checks) + grain."""
    img = np.empty((h, w, 3), np.float32)
    img[:] = rng.uniform(25, 230, 3)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, 2 * math.pi)
    ramp = (x * math.cos(t) + y * math.sin(t)) / max(h, w)
    img += ramp[..., None] * rng.uniform(-70, 70, 3)
    for _ in range(rng.integers(1, 3)):
        cells = (int(rng.integers(2, 10)), int(rng.integers(2, 10)))
        img += _smooth_field(h, w, rng, cells)[..., None] * rng.uniform(-35, 35, 3)
    pattern = rng.random()
    if pattern < 0.3:
        img += _stripes(h, w, rng)[..., None] * rng.uniform(-22, 22, 3)
    elif pattern < 0.45:
        cell = rng.integers(8, 28)
        checks = ((x // cell + y // cell) % 2) * 2 - 1
        img += checks[..., None] * rng.uniform(-18, 18, 3)
    return img


def random_colour(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 1.0), rng.uniform(0.25, 1.0))
    return np.array([r, g, b], np.float32) * 255


def paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> None:
    """Fill `mask` (full-image bool) with `colour` plus a random gradient / stripes / outline texture."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    m = mask[y0:y1, x0:x1]
    h, w = m.shape
    tex = np.empty((h, w, 3), np.float32)
    tex[:] = colour
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = rng.uniform(0, 2 * math.pi)
    ramp = (xx * math.cos(t) + yy * math.sin(t)) / max(h, w, 1)
    tex += ramp[..., None] * rng.uniform(-40, 40)
    if rng.random() < 0.2:
        tex += _stripes(h, w, rng)[..., None] * rng.uniform(-20, 20)
    if rng.random() < 0.25 and min(h, w) >= 12:
        inner = m.copy()
        inner[1:, :] &= m[:-1, :]
        inner[:-1, :] &= m[1:, :]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        tex[m & ~inner] += rng.choice([-1.0, 1.0]) * 60
    region = img[y0:y1, x0:x1]
    region[m] = tex[m]


def distractor_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A thing in no class: a thick line, a zig-zag, a cross or an irregular blob (full-image bool)."""
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    kind = rng.choice(["line", "zigzag", "cross", "blob"], p=[0.3, 0.25, 0.15, 0.3])
    if kind in ("line", "zigzag"):
        n = 2 if kind == "line" else int(rng.integers(3, 6))
        start = rng.uniform([0, 0], [w, h])
        pts = [start]
        for _ in range(n - 1):
            step = rng.uniform(20, 0.5 * max(h, w))
            a = rng.uniform(0, 2 * math.pi)
            pts.append(pts[-1] + step * np.array([math.cos(a), math.sin(a)]))
        draw.line([tuple(map(float, p)) for p in pts], fill=1, width=int(rng.integers(1, 5)))
    elif kind == "cross":
        c = rng.uniform([0, 0], [w, h])
        arm = rng.uniform(6, 0.2 * min(h, w))
        bar = max(2.0, arm * rng.uniform(0.25, 0.45))
        a = rng.uniform(0, math.pi / 2)
        for b in (a, a + math.pi / 2):
            u = np.array([math.cos(b), math.sin(b)])
            v = np.array([-u[1], u[0]])
            quad = [c + arm * u + bar / 2 * v, c + arm * u - bar / 2 * v, c - arm * u - bar / 2 * v, c - arm * u + bar / 2 * v]
            draw.polygon([tuple(map(float, p)) for p in quad], fill=1)
    else:
        c = rng.uniform([0, 0], [w, h])
        radius = rng.uniform(6, 0.25 * min(h, w))
        t = np.arange(64) * (2 * math.pi / 64)
        rr = np.ones_like(t)
        for k in (2, 3, 4):  # a lumpy potato: never a circle, ellipse or 5-point star
            rr += rng.uniform(0.12, 0.25) * np.sin(k * t + rng.uniform(0, 2 * math.pi))
        pts = np.stack([c[0] + radius * rr * np.cos(t), c[1] + radius * rr * np.sin(t)], axis=1)
        draw.polygon([tuple(map(float, p)) for p in pts], fill=1)
    return np.asarray(canvas, dtype=bool)


# --- composition -------------------------------------------------------------------------------------

def _place(local: np.ndarray, x0: int, y0: int, h: int, w: int) -> np.ndarray:
    full = np.zeros((h, w), bool)
    lh, lw = local.shape
    ya, yb, xa, xb = max(y0, 0), min(y0 + lh, h), max(x0, 0), min(x0 + lw, w)
    if ya < yb and xa < xb:
        full[ya:yb, xa:xb] = local[ya - y0: yb - y0, xa - x0: xb - x0]
    return full


def _pick_colour(img: np.ndarray, mask: np.ndarray, below: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A colour far from the mean of what is painted over and from the instances it overlaps."""
    refs = [img[mask].mean(axis=0)] + list(below)
    best, best_d = None, -1.0
    for _ in range(30):
        c = random_colour(rng)
        d = min(float(np.linalg.norm(c - r)) for r in refs)
        if d >= MIN_COLOUR_DISTANCE:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


def make_image(seed: int, index: int):
    """Image `index` of the split with seed `seed`: (uint8 HxWx3, [(category_id, visible mask)])."""
    rng = np.random.default_rng([seed, index])
    h, w = int(rng.integers(MIN_SIDE, MAX_SIDE + 1)), int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    img = background(h, w, rng)
    n_inst, n_dist = int(rng.integers(1, 9)), int(rng.integers(0, 5))
    order = rng.permutation([True] * n_inst + [False] * n_dist)
    instances: List[Dict[str, object]] = []
    max_d = MAX_SHAPE_FRACTION * min(h, w)
    for is_instance in order:
        for _attempt in range(12):
            if is_instance:
                cls = int(rng.integers(1, len(CLASSES)))
                d = math.exp(rng.uniform(math.log(MIN_SHAPE), math.log(max_d)))
                cx = rng.uniform(0.25 * d, w - 0.25 * d)
                cy = rng.uniform(0.25 * d, h - 0.25 * d)
                local, x0, y0 = shape_mask(CLASSES[cls], d, cx, cy, rng)
                mask = _place(local, x0, y0, h, w)
                full_area = int(local.sum())
                if mask.sum() < 0.5 * full_area:
                    continue
            else:
                mask = distractor_mask(h, w, rng)
                if not mask.any():
                    continue
            if all((inst["mask"] & ~mask).sum() >= KEEP_VISIBLE_WHILE_PLACING * inst["area"] for inst in instances):
                break
        else:
            continue  # no placement keeps the others visible: leave this one out
        below = [inst["colour"] for inst in instances if (inst["mask"] & mask).any()]
        colour = _pick_colour(img, mask, below, rng)
        paint(img, mask, colour, rng)
        for inst in instances:
            inst["mask"] &= ~mask
        if is_instance:
            instances.append({"cls": cls, "mask": mask, "area": full_area, "colour": colour})
    if rng.random() < GRAIN_PROBABILITY:  # pixel grain is incompressible: only some images, to keep the PNGs small
        img += rng.normal(0, rng.uniform(1, 3), img.shape).astype(np.float32)
    out = Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    if rng.random() < 0.7:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    kept = [(inst["cls"], inst["mask"]) for inst in instances
            if inst["mask"].sum() >= max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * inst["area"])]
    return np.asarray(out), kept


# --- COCO --------------------------------------------------------------------------------------------

def rle_encode(mask: np.ndarray) -> Dict[str, object]:
    """COCO uncompressed RLE: column-major run lengths, starting with the zero run (maybe empty)."""
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: Dict[str, object]) -> np.ndarray:
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2
    flat = np.repeat(values.astype(bool), counts)
    if flat.size != h * w:
        raise ValueError(f"RLE counts sum to {flat.size}, expected {h}x{w}={h * w}")
    return flat.reshape((h, w), order="F")


def mask_bbox(mask: np.ndarray) -> List[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def write_split(out_dir: str, split: str, count: int, seed: int, quiet: bool = False) -> Dict[str, int]:
    folder = os.path.join(out_dir, split)
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        pixels, kept = make_image(seed, i)
        name = f"{split}_{i:05d}.png"
        Image.fromarray(pixels).save(os.path.join(folder, "images", name), optimize=True)
        images.append({"id": i + 1, "file_name": f"images/{name}", "height": int(pixels.shape[0]),
                       "width": int(pixels.shape[1])})
        for cls, mask in kept:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls,
                                "bbox": mask_bbox(mask), "area": int(mask.sum()), "iscrowd": 0,
                                "segmentation": rle_encode(mask)})
        if not quiet and (i + 1) % 250 == 0:
            print(f"  {split}: {i + 1}/{count} images", flush=True)
    coco = {
        "info": {"description": f"maskgpu synthetic shapes, split {split}", "seed": seed,
                 "generator": "tools/make_shapes_dataset.py"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES) if i > 0],
    }
    tmp = os.path.join(folder, ".annotations.json.tmp")
    with open(tmp, "w") as f:
        json.dump(coco, f, separators=(",", ":"))
    os.replace(tmp, os.path.join(folder, "annotations.json"))
    return {"images": len(images), "instances": len(annotations)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/shapes", help="dataset folder (one sub-folder per split)")
    ap.add_argument("--splits", default="val,test", help="comma-separated: train, val, test")
    ap.add_argument("--count", type=int, help="images per split (default train 3000, val 100, test 100)")
    ap.add_argument("--seed", type=int, help="override the split's seed (default train 1, val 2, test 3)")
    args = ap.parse_args(argv)
    for split in args.splits.split(","):
        if split not in SPLIT_SEEDS:
            raise SystemExit(f"unknown split {split!r}: use train, val or test")
        count = args.count if args.count is not None else DEFAULT_COUNTS[split]
        seed = args.seed if args.seed is not None else SPLIT_SEEDS[split]
        stats = write_split(args.out, split, count, seed)
        print(f"{args.out}/{split}: {stats['images']} images, {stats['instances']} instances (seed {seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
