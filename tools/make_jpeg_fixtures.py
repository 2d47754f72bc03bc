#!/usr/bin/env python3
"""Writes tests/fixtures/jpeg/: small JPEGs of every common kind (and a few WebP, GIF and TIFF
files), each with Pillow's decode of it, for tests/jpeg.test.ts (maskgpu's decoder must equal
Pillow's byte for byte) and tests/jpeg-browser.test.ts (what Chromium makes of the same files).

Run with the system Python (Debian's python3-pil, libjpeg-turbo): /usr/bin/python3 tools/make_jpeg_fixtures.py
The oracle for every file is `Image.open(path).convert('RGB')`, what a torchvision user's
dataset loader does (EXIF orientation not applied); files with an EXIF orientation also get
`ImageOps.exif_transpose(Image.open(path)).convert('RGB')`, the 'apply' mode.

Most files are written by Pillow (libjpeg-turbo: baseline/progressive, 4:4:4/4:2:2/4:2:0,
grayscale, Adobe CMYK, EXIF, an ICC profile). The kinds Pillow cannot write (4:1:1, 4:4:0,
restart markers, YCCK, CMYK without the Adobe marker, RGB without colour transform, junk bytes
before a marker) come from the small baseline encoder below (DCT, quantisation, flat Huffman
tables: valid, if not compact, JPEG). Everything is seeded: a rerun writes the same bytes.

Each expected decode is a PNG written by Pillow (`<name>.pillow.png`, RGB8; `<name>.pillow-apply.png`
with the EXIF orientation applied; identical decodes share one file); index.json lists every file
with its kind, size, the JPEG's structure as parsed here, sha256 of the file and of the decoded
RGB bytes.
"""

import argparse
import hashlib
import io
import json
import math
import os
import struct
import sys

import numpy as np
import PIL
from PIL import Image, ImageCms, ImageOps, features

W, H = 97, 61  # odd sizes: partial MCUs in both directions for every sampling
SMALL_W, SMALL_H = 33, 21  # the EXIF orientation set


def source_image(w, h, seed=1):
    """A photo-like RGB8 image: gradients, a saturated colour checker, thin lines, mild noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 40 + 180 * x / max(w - 1, 1)
    g = 30 + 190 * y / max(h - 1, 1)
    b = 128 + 90 * np.sin((x + 2 * y) / 6.0)
    img = np.stack([r, g, b], -1)
    # saturated red/blue/green/yellow checker in the right third: chroma edges that upsampling smears
    cx = (x > 0.62 * w) & (y > 0.2 * h) & (y < 0.8 * h)
    cell = ((x // 5) + (y // 5)) % 4
    colours = np.array([[230, 20, 30], [20, 40, 220], [30, 200, 40], [240, 220, 20]], np.float64)
    img[cx] = colours[cell[cx].astype(int)]
    # thin dark lines on the left
    lines = (x < 0.3 * w) & ((y.astype(int) % 7) == 3)
    img[lines] = [15, 15, 25]
    img += rng.normal(0, 5, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- a small baseline JPEG encoder

ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])
STD_LUMA_Q = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])
STD_CHROMA_Q = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99]
    + [99] * 32)


def quant_table(base, quality):
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255).astype(np.int64)


DCT = np.array([[(math.sqrt(1 / 8) if k == 0 else math.sqrt(2 / 8)) * math.cos((2 * n + 1) * k * math.pi / 16) for n in range(8)] for k in range(8)])

# Flat Huffman tables: DC categories 0..11 as 4-bit codes, every AC symbol (EOB, ZRL, run/size
# 0..15 x 1..10) as an 8-bit code. Canonical codes are assigned in symbol-list order.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(run << 4) | size for run in range(16) for size in range(1, 11)]
DC_CODE = {s: (i, 4) for i, s in enumerate(DC_SYMBOLS)}
AC_CODE = {s: (i, 8) for i, s in enumerate(AC_SYMBOLS)}


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, value, count):
        for b in range(count - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> b) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc = self.n = 0

    def flush(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with 1s


def magnitude(v):
    cat = 0 if v == 0 else int(abs(v)).bit_length()
    return cat, (v if v >= 0 else v + (1 << cat) - 1)


def segment(marker, body):
    return bytes([0xFF, marker]) + struct.pack('>H', len(body) + 2) + bytes(body)


def adobe_segment(transform):
    return segment(0xEE, b'Adobe' + struct.pack('>HHHB', 100, 0, 0, transform))


JFIF = segment(0xE0, b'JFIF\0' + bytes([1, 1, 0, 0, 1, 0, 1, 0, 0]))


def encode_jpeg(planes, sampling, quality=90, restart=0, app=(), jfif=True, qtables=None, junk_before_rst=0):
    """Baseline, Huffman, one interleaved scan (or one component). planes: full-size uint8 arrays
    of the values to store; sampling: (h, v) per component; restart: MCUs per restart interval."""
    h_img, w_img = planes[0].shape
    hmax = max(s[0] for s in sampling)
    vmax = max(s[1] for s in sampling)
    mcux = -(-w_img // (8 * hmax))
    mcuy = -(-h_img // (8 * vmax))
    n = len(planes)
    if qtables is None:
        qtables = [0] + [1] * (n - 1)
    tables = [quant_table(STD_LUMA_Q, quality), quant_table(STD_CHROMA_Q, quality)]
    comps = []
    for plane, (h, v) in zip(planes, sampling):
        fx, fy = hmax // h, vmax // v
        cw, ch = -(-w_img // fx), -(-h_img // fy)
        p = np.pad(plane.astype(np.float64), ((0, ch * fy - h_img), (0, cw * fx - w_img)), mode='edge')
        p = p.reshape(ch, fy, cw, fx).mean(axis=(1, 3))  # box-filter downsampling
        p = np.pad(p, ((0, mcuy * v * 8 - ch), (0, mcux * h * 8 - cw)), mode='edge')
        comps.append(p)
    bw = BitWriter()
    pred = [0] * n
    if n == 1:
        sampling = [(1, 1)]
    for m in range(mcux * mcuy):
        if restart and m and m % restart == 0:
            bw.flush()
            bw.out += bytes([0x13, 0x37, 0x42][:junk_before_rst])  # junk: libjpeg warns and skips it
            bw.out += bytes([0xFF, 0xD0 + (m // restart - 1) % 8])
            pred = [0] * n
        my, mx = divmod(m, mcux)
        for c, (h, v) in enumerate(sampling):
            for by in range(v):
                for bx in range(h):
                    y0, x0 = (my * v + by) * 8, (mx * h + bx) * 8
                    block = comps[c][y0:y0 + 8, x0:x0 + 8] - 128
                    coef = DCT @ block @ DCT.T
                    q = np.rint(coef.flatten() / tables[qtables[c]]).astype(np.int64)[ZIGZAG]
                    diff = int(q[0]) - pred[c]
                    pred[c] = int(q[0])
                    cat, bits = magnitude(diff)
                    bw.put(*DC_CODE[cat])
                    if cat:
                        bw.put(bits, cat)
                    run = 0
                    last = max([i for i in range(1, 64) if q[i] != 0], default=0)
                    for i in range(1, last + 1):
                        if q[i] == 0:
                            run += 1
                            continue
                        while run > 15:
                            bw.put(*AC_CODE[0xF0])
                            run -= 16
                        cat, bits = magnitude(int(q[i]))
                        bw.put(*AC_CODE[(run << 4) | cat])
                        bw.put(bits, cat)
                        run = 0
                    if last < 63:
                        bw.put(*AC_CODE[0x00])
    bw.flush()
    out = bytearray(b'\xFF\xD8')
    if jfif:
        out += JFIF
    for a in app:
        out += a
    for t in sorted(set(qtables)):
        out += segment(0xDB, bytes([t]) + bytes(int(x) for x in tables[t].flatten()[ZIGZAG]))
    sof = struct.pack('>BHHB', 8, h_img, w_img, n)
    for c, (h, v) in enumerate(sampling):
        sof += bytes([c + 1, (h << 4) | v, qtables[c]])
    out += segment(0xC0, sof)
    dc_bits = [0] * 16
    dc_bits[3] = len(DC_SYMBOLS)
    ac_bits = [0] * 16
    ac_bits[7] = len(AC_SYMBOLS)
    out += segment(0xC4, bytes([0x00] + dc_bits + DC_SYMBOLS))
    out += segment(0xC4, bytes([0x10] + ac_bits + AC_SYMBOLS))
    if restart:
        out += segment(0xDD, struct.pack('>H', restart))
    out += segment(0xDA, bytes([n] + [b for c in range(n) for b in (c + 1, 0x00)] + [0, 63, 0]))
    out += bw.out
    out += b'\xFF\xD9'
    return bytes(out)


def ycbcr(rgb):
    r, g, b = [rgb[..., i].astype(np.float64) for i in range(3)]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128
    return [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (y, cb, cr)]


def adobe_cmyk(rgb):
    """CMYK with some under-colour removal, in Adobe's inverted convention (255 = no ink)."""
    ink = 255 - rgb.astype(np.float64)
    k = np.floor(ink.min(-1) * 0.8)
    cmy = ink - k[..., None]
    return [np.clip(np.rint(255 - p), 0, 255).astype(np.uint8) for p in (cmy[..., 0], cmy[..., 1], cmy[..., 2], k)]


# ---------------------------------------------------------------- a non-sRGB ICC profile


def s15(v):
    return struct.pack('>i', int(round(v * 65536)))


def display_p3_like_profile():
    """An ICC v2 RGB display profile with Display P3 primaries and gamma 2.2 TRCs: a valid
    profile that a colour-managed decoder would apply (Pillow and maskgpu ignore it)."""
    def xyz(x, y, z):
        return b'XYZ \0\0\0\0' + s15(x) + s15(y) + s15(z)
    curv = b'curv\0\0\0\0' + struct.pack('>IH', 1, 0x0233) + b'\0\0'  # gamma 2.2 (u8Fixed8), padded to 4
    desc_text = b'maskgpu test P3 g2.2\0'
    desc = b'desc\0\0\0\0' + struct.pack('>I', len(desc_text)) + desc_text + struct.pack('>II', 0, 0) + struct.pack('>HB', 0, 0) + b'\0' * 67
    text = b'text\0\0\0\0' + b'public domain\0'
    tags = [(b'desc', desc), (b'cprt', text), (b'wtpt', xyz(0.9642, 1.0, 0.8249)), (b'rXYZ', xyz(0.5151, 0.2412, -0.0011)),
            (b'gXYZ', xyz(0.2920, 0.6922, 0.0419)), (b'bXYZ', xyz(0.1571, 0.0666, 0.7841)), (b'rTRC', curv), (b'gTRC', curv), (b'bTRC', curv)]
    offset = 128 + 4 + 12 * len(tags)
    table = struct.pack('>I', len(tags))
    data = b''
    for sig, body in tags:
        body = body + b'\0' * (-len(body) % 4)
        table += sig + struct.pack('>II', offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack('>I', size) + b'lcms' + bytes([2, 0x10, 0, 0]) + b'mntr' + b'RGB ' + b'XYZ ' + b'\0' * 12 + b'acsp' + b'APPL'
              + b'\0' * 4 + b'\0' * 4 + b'\0' * 4 + b'\0' * 8 + struct.pack('>I', 0) + s15(0.9642) + s15(1.0) + s15(0.8249) + b'\0' * 4)
    header += b'\0' * (128 - len(header))
    return header + table + data


def tiff_rgb16(arr):
    """A little-endian, uncompressed, single-strip 16-bit RGB TIFF (Pillow cannot write one)."""
    h, w, _ = arr.shape
    data = arr.astype('<u2').tobytes()
    bps_at = 8 + len(data)
    ifd_at = bps_at + 6 + (bps_at + 6) % 2
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bps_at), (259, 3, 1, 1), (262, 3, 1, 2), (273, 4, 1, 8),
            (277, 3, 1, 3), (278, 4, 1, h), (279, 4, 1, len(data)), (284, 3, 1, 1)]
    out = b'II*\0' + struct.pack('<I', ifd_at) + data + struct.pack('<HHH', 16, 16, 16)
    out += b'\0' * (ifd_at - len(out)) + struct.pack('<H', len(tags))
    for tag, typ, count, value in tags:
        out += struct.pack('<HHIHH', tag, typ, count, value, 0) if typ == 3 and count == 1 else struct.pack('<HHII', tag, typ, count, value)
    return out + struct.pack('<I', 0)


# ---------------------------------------------------------------- JPEG structure, for the index


def jpeg_info(data):
    """SOF type, components and sampling, Adobe transform, restart interval, from the markers."""
    info = {'adobeTransform': None, 'restartInterval': 0, 'scans': 0, 'jfif': False, 'exif': False, 'icc': False}
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            at += 1
            continue
        marker = data[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            at += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:
            break
        length = struct.unpack('>H', data[at + 2:at + 4])[0]
        body = data[at + 4:at + 2 + length]
        if marker == 0xE0 and body.startswith(b'JFIF'):
            info['jfif'] = True
        if marker == 0xE1 and body.startswith(b'Exif\0\0'):
            info['exif'] = True
        if marker == 0xE2 and body.startswith(b'ICC_PROFILE'):
            info['icc'] = True
        if marker == 0xEE and body.startswith(b'Adobe'):
            info['adobeTransform'] = body[11]
        if marker == 0xDD:
            info['restartInterval'] = struct.unpack('>H', body[:2])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            info['sof'] = f'SOF{marker - 0xC0}'
            info['progressive'] = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            n = body[5]
            info['components'] = n
            info['sampling'] = ','.join(f'{body[6 + 3 * c + 1] >> 4}x{body[6 + 3 * c + 1] & 15}' for c in range(n))
        at += 2 + length
        if marker == 0xDA:
            info['scans'] += 1
            # skip entropy-coded data up to the next non-RST marker
            while at + 1 < len(data) and not (data[at] == 0xFF and data[at + 1] not in (0x00,) and not 0xD0 <= data[at + 1] <= 0xD7):
                at += 1
    return info


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out-dir', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'fixtures', 'jpeg'))
    args = ap.parse_args()
    out = os.path.normpath(args.out_dir)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.endswith(('.jpg', '.png', '.webp', '.gif', '.tif', '.json')):  # everything this script writes
            os.remove(os.path.join(out, f))

    src = source_image(W, H)
    small = source_image(SMALL_W, SMALL_H, seed=2)
    im = Image.fromarray(src, 'RGB')
    files = []  # (name, bytes, format, kind, encoder)

    def pillow(name, image, fmt, kind, **save):
        b = io.BytesIO()
        image.save(b, fmt, **save)
        files.append((name, b.getvalue(), fmt.lower(), kind, f'Pillow {PIL.__version__}'))

    def own(name, data, kind):
        files.append((name, data, 'jpeg', kind, 'tools/make_jpeg_fixtures.py baseline encoder'))

    # --- Pillow (libjpeg-turbo) JPEGs
    for sub, label in ((0, '444'), (1, '422'), (2, '420')):
        pillow(f'baseline_{label}', im, 'JPEG', f'baseline YCbCr 4:{label[1]}:{label[2]}', quality=90, subsampling=sub)
        pillow(f'progressive_{label}', im, 'JPEG', f'progressive YCbCr 4:{label[1]}:{label[2]}', quality=90, subsampling=sub, progressive=True)
    pillow('baseline_420_q75_optimized', im, 'JPEG', 'baseline 4:2:0, quality 75, optimised Huffman tables', quality=75, subsampling=2, optimize=True)
    pillow('gray_baseline', im.convert('L'), 'JPEG', 'grayscale (1 component), baseline', quality=90)
    pillow('gray_progressive', im.convert('L'), 'JPEG', 'grayscale (1 component), progressive', quality=90, progressive=True)
    cmyk = Image.fromarray(np.stack([255 - p for p in adobe_cmyk(src)], -1), 'CMYK')  # real ink values; Pillow writes them inverted
    pillow('cmyk_adobe', cmyk, 'JPEG', 'CMYK, Adobe marker (transform 0, inverted), as Pillow writes it', quality=90)
    pillow('cmyk_adobe_progressive', cmyk, 'JPEG', 'CMYK, Adobe marker, progressive', quality=90, progressive=True)
    pillow('icc_p3', im, 'JPEG', 'YCbCr 4:2:0 with an embedded non-sRGB ICC profile (Display P3 primaries, gamma 2.2)',
           quality=90, subsampling=2, icc_profile=display_p3_like_profile())
    pillow('tiny_3x2', Image.fromarray(src[:2, :3]), 'JPEG', '3x2 pixels, 4:2:0 (one partial MCU)', quality=90, subsampling=2)
    pillow('single_pixel_gray', Image.fromarray(src[:1, :1, 1], 'L'), 'JPEG', '1x1 grayscale', quality=90)
    small_im = Image.fromarray(small, 'RGB')
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        pillow(f'exif_orientation_{o}', small_im, 'JPEG', f'4:2:0 with EXIF Orientation {o}', quality=90, subsampling=2, exif=exif.tobytes())

    # --- the encoder above: what Pillow cannot write
    y, cb, cr = ycbcr(src)
    own('baseline_411', encode_jpeg([y, cb, cr], [(4, 1), (1, 1), (1, 1)]), 'baseline YCbCr 4:1:1 (luma 4x1)')
    own('baseline_440', encode_jpeg([y, cb, cr], [(1, 2), (1, 1), (1, 1)]), 'baseline YCbCr 4:4:0 (luma 1x2)')
    own('baseline_420_restart', encode_jpeg([y, cb, cr], [(2, 2), (1, 1), (1, 1)], restart=2), 'baseline 4:2:0 with restart markers every 2 MCUs')
    own('baseline_422_restart_junk', encode_jpeg([y, cb, cr], [(2, 1), (1, 1), (1, 1)], restart=3, junk_before_rst=2),
        'baseline 4:2:2, restart markers each preceded by 2 junk bytes (libjpeg warns "extraneous bytes before marker" and decodes)')
    own('baseline_mixed_h2v2_cb_h1v2', encode_jpeg([y, cb, cr], [(2, 2), (1, 2), (1, 1)]), 'baseline, unusual sampling: Y 2x2, Cb 1x2, Cr 1x1')
    own('rgb_adobe', encode_jpeg([src[..., 0], src[..., 1], src[..., 2]], [(1, 1)] * 3, app=[adobe_segment(0)], jfif=False, qtables=[0, 0, 0]),
        'RGB stored without colour transform (Adobe marker, transform 0)')
    c, m, yy, k = adobe_cmyk(src)
    ycc = ycbcr(np.stack([255 - c, 255 - m, 255 - yy], -1).astype(np.uint8))  # libjpeg: C = 255 - R(YCC)
    own('ycck_adobe', encode_jpeg([*ycc, k], [(2, 2), (1, 1), (1, 1), (2, 2)], app=[adobe_segment(2)], jfif=False, qtables=[0, 1, 1, 0]),
        'YCCK (Adobe marker, transform 2), Y and K 2x2')
    own('cmyk_no_adobe', encode_jpeg([c, m, yy, k], [(1, 1)] * 4, jfif=False, qtables=[0, 0, 0, 0]),
        '4-component CMYK without an Adobe marker (Pillow still assumes inverted Adobe CMYK)')
    own('gray_restart', encode_jpeg([y], [(1, 1)], restart=5), 'grayscale baseline with restart markers every 5 blocks')

    # --- other formats sharp decodes (no JPEG)
    rgba = Image.fromarray(np.dstack([src, ((np.arange(W)[None, :] * 3 + np.arange(H)[:, None] * 5) % 256).astype(np.uint8)]), 'RGBA')
    pillow('webp_lossy', im, 'WEBP', 'WebP lossy (libwebp, YUV 4:2:0)', quality=85)
    pillow('webp_lossless', im, 'WEBP', 'WebP lossless', lossless=True)
    pillow('webp_lossless_alpha', rgba, 'WEBP', 'WebP lossless with an alpha channel (dropped)', lossless=True, exact=True)
    pal = im.quantize(64, dither=Image.Dither.NONE)
    pillow('gif', pal, 'GIF', 'GIF, 64-colour palette')
    pillow('gif_transparent', pal, 'GIF', 'GIF, 64-colour palette, index 5 transparent', transparency=5)
    pillow('tiff_raw', im, 'TIFF', 'TIFF, uncompressed RGB')
    pillow('tiff_lzw', im, 'TIFF', 'TIFF, LZW RGB', compression='tiff_lzw')
    pillow('tiff_gray_deflate', im.convert('L'), 'TIFF', 'TIFF, grayscale, Deflate', compression='tiff_adobe_deflate')
    frames = [Image.fromarray(np.roll(src, 9 * i, axis=1)).quantize(32, dither=Image.Dither.NONE) for i in range(3)]
    pillow('gif_animated', frames[0], 'GIF', 'animated GIF, 3 frames (the first is read)', save_all=True, append_images=frames[1:], duration=100, loop=0)
    pillow('tiff_multipage', im, 'TIFF', 'TIFF, 2 pages (the first is read)', save_all=True, append_images=[im.convert('L')])
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    pillow('webp_exif_orientation_6', small_im, 'WEBP', 'WebP lossless with EXIF Orientation 6', lossless=True, exif=exif6.tobytes())
    pillow('png_exif_orientation_6', small_im, 'PNG', 'PNG with an eXIf chunk, Orientation 6 (decoded by maskgpu itself, not sharp)', exif=exif6.tobytes())
    pillow('tiff_orientation_6', small_im, 'TIFF', 'TIFF with the Orientation tag 6', tiffinfo={0x0112: 6})
    rgb16 = small.astype(np.uint16) * 257 + np.random.default_rng(3).integers(0, 257, small.shape).astype(np.uint16)
    files.append(('tiff_rgb16', tiff_rgb16(rgb16), 'tiff', '16-bit RGB TIFF (Pillow keeps the high byte)', 'tools/make_jpeg_fixtures.py TIFF writer'))

    # --- a JPEG with damaged entropy-coded data: libjpeg warns ("Corrupt JPEG data") and decodes
    # what it can, Pillow does not raise, so maskgpu must decode it to the same pixels.
    base = bytearray(files[[f[0] for f in files].index('baseline_420')][1])
    sos = base.index(b'\xff\xda')
    mid = (sos + len(base)) // 2
    for i in range(mid, mid + 40):
        if base[i] != 0xFF and base[i - 1] != 0xFF and base[i] ^ 0x5A != 0xFF:
            base[i] ^= 0x5A
    own('corrupt_entropy_420', bytes(base), 'baseline 4:2:0 with 40 bytes of entropy-coded data damaged (libjpeg warns and decodes)')

    ext = {'jpeg': 'jpg', 'webp': 'webp', 'gif': 'gif', 'tiff': 'tif', 'png': 'png'}
    index = {
        'about': 'Written by tools/make_jpeg_fixtures.py. expected: Image.open(file).convert("RGB") as an RGB8 PNG; '
                 'expectedApply: ImageOps.exif_transpose(Image.open(file)).convert("RGB").',
        'pillow': PIL.__version__,
        'libjpeg_turbo': features.version('libjpeg_turbo'),
        'libwebp': features.version('webp'),
        'files': [],
    }
    written = {}  # sha256 of RGB bytes -> PNG file
    for name, data, fmt, kind, encoder in files:
        fname = f'{name}.{ext[fmt]}'
        with open(os.path.join(out, fname), 'wb') as f:
            f.write(data)
        opened = Image.open(io.BytesIO(data))
        mode = opened.mode
        orientation = opened.getexif().get(0x0112)  # before load: a TIFF closes its file once loaded
        rgb = opened.convert('RGB')
        entry = {'file': fname, 'format': fmt, 'kind': kind, 'encoder': encoder, 'bytes': len(data), 'sha256': sha256(data),
                 'mode': mode, 'width': rgb.width, 'height': rgb.height}
        if fmt == 'jpeg':
            entry['jpeg'] = jpeg_info(data)
        if orientation:
            entry['exifOrientation'] = orientation

        def expected(image, suffix):
            digest = sha256(image.tobytes())
            if digest not in written:  # identical decodes (lossless files of one source, progressive = baseline) share one PNG
                written[digest] = f'{name}.{suffix}.png'
                image.save(os.path.join(out, written[digest]), 'PNG', optimize=True)
            return {'file': written[digest], 'width': image.width, 'height': image.height, 'sha256': digest}

        entry['expected'] = expected(rgb, 'pillow')
        if orientation and orientation != 1 and fmt == 'tiff':
            # Pillow's TIFF loader applies the Orientation tag itself (TiffImageFile.load_end), so
            # Image.open gives the upright image; exif_transpose would turn it a second time.
            entry['note'] = "Pillow's TIFF loader applies the Orientation tag on open: upright in both modes"
            entry['expectedApply'] = entry['expected']
        elif orientation and orientation != 1:
            entry['expectedApply'] = expected(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert('RGB'), 'pillow-apply')
        index['files'].append(entry)

    with open(os.path.join(out, 'index.json'), 'w') as f:
        f.write('{\n' + ',\n'.join(f' {json.dumps(k)}: {json.dumps(v)}' for k, v in index.items() if k != 'files'))
        f.write(',\n "files": [\n' + ',\n'.join('  ' + json.dumps(e) for e in index['files']) + '\n ]\n}')
        f.write('\n')
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    big = [(f, os.path.getsize(os.path.join(out, f))) for f in os.listdir(out) if os.path.getsize(os.path.join(out, f)) > 30000]
    print(f'{len(files)} files, {len(os.listdir(out))} written, {total / 1024:.0f} KiB in {out}')
    if big:
        print(f'over 30 KB: {big}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
