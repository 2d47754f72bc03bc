"""Minimal safetensors reader/writer for the maskgpu tools (no `safetensors` package needed).

File layout (https://github.com/huggingface/safetensors, "Format"):
    u64 little-endian N | N bytes of JSON header | raw tensor bytes
The header maps each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
start of the byte buffer) plus an optional "__metadata__" object of string -> string.
We pad the header with spaces to a multiple of 8 so every tensor starts 8-byte aligned (the
TypeScript loader can then view F32 data without copying), and write tensors contiguously in sorted
key order so the same inputs always give the same bytes.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Dict, Optional, Tuple, Union

import torch

# safetensors dtype name <-> torch dtype, restricted to what the project uses.
_DTYPES: Dict[str, torch.dtype] = {
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F64": torch.float64,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
}
_NAMES = {v: k for k, v in _DTYPES.items()}

DtypeLike = Union[None, str, torch.dtype]


def _resolve_dtype(dtype: DtypeLike) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    aliases = {"f32": "F32", "f16": "F16", "bf16": "BF16", "f64": "F64"}
    key = aliases.get(dtype.lower(), dtype.upper())
    if key not in _DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[key]


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous().reshape(-1)
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: reinterpret the bits
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def save_file(
    tensors: Dict[str, torch.Tensor],
    path: Union[str, os.PathLike],
    metadata: Optional[Dict[str, str]] = None,
    dtype: DtypeLike = None,
) -> None:
    """Write `tensors` to `path`. Floating tensors are cast to `dtype` (default F32); integer and
    uint8 tensors keep their type. The file is written to a temporary name and renamed, so a crash
    never leaves a truncated file behind."""
    float_dtype = _resolve_dtype(dtype)
    if not float_dtype.is_floating_point:
        raise ValueError(f"dtype selects the type of floating tensors; got {float_dtype}")
    header: Dict[str, object] = {}
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"safetensors metadata values must be strings; fix keys {bad} (json.dumps them)")
        header["__metadata__"] = dict(metadata)
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved for the metadata object")
        t = tensors[name]
        if t.is_floating_point():
            t = t.to(float_dtype)
        if t.dtype not in _NAMES:
            raise ValueError(f"tensor {name!r} has dtype {t.dtype}; supported: {sorted(_DTYPES)}")
        data = _tensor_bytes(t)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * ((8 - (8 + len(head)) % 8) % 8)  # 8 + len(head): the u64 prefix counts towards alignment

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for data in chunks:
                f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_file(path: Union[str, os.PathLike]) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Read a safetensors file. Returns (name -> tensor, metadata); metadata is {} when absent."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short to be a safetensors file ({len(raw)} bytes)")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(raw)} bytes)")
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    metadata = header.pop("__metadata__", None) or {}
    tensors: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        code = info["dtype"]
        if code not in _DTYPES:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {code}; supported: {sorted(_DTYPES)}")
        dt = _DTYPES[code]
        begin, end = info["data_offsets"]
        shape = list(info["shape"])
        count = 1
        for s in shape:
            count *= s
        itemsize = torch.empty((), dtype=dt).element_size()
        if end - begin != count * itemsize or base + end > len(raw):
            raise ValueError(f"{path}: tensor {name!r} offsets {begin}..{end} do not fit shape {shape} x {code}")
        buf = bytearray(raw[base + begin : base + end])  # copy: tensors must own writable memory
        t = torch.frombuffer(buf, dtype=dt) if count > 0 else torch.empty(0, dtype=dt)
        tensors[name] = t.reshape(shape)
    return tensors, metadata


def round_trip_check() -> None:
    """Self-test: every supported dtype, 0-d and empty tensors, metadata, 8-byte header padding."""
    import tempfile

    g = torch.Generator().manual_seed(0)
    t = {"a": torch.randn(3, 5, generator=g), "b": torch.arange(7), "c": torch.randn(2, 3, generator=g).half(),
         "d": torch.randn(4, generator=g).bfloat16(), "e": torch.tensor([1, 2], dtype=torch.uint8),
         "f": torch.tensor(2.5, dtype=torch.float64), "g": torch.zeros(0, 4), "h": torch.arange(3).int()}
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.safetensors")
        for dtype in (None, "f16", "bf16", "f64"):
            save_file(t, path, {"k": "v"}, dtype=dtype)
            back, meta = load_file(path)
            want_float = _resolve_dtype(dtype)
            assert meta == {"k": "v"} and set(back) == set(t), "safetensors metadata/keys round trip"
            for k, v in t.items():
                want = v.to(want_float) if v.is_floating_point() else v
                assert back[k].dtype == want.dtype and torch.equal(back[k], want), f"safetensors round trip of {k}"
            with open(path, "rb") as f:
                header_len = struct.unpack("<Q", f.read(8))[0]
            assert header_len % 8 == 0, "header is padded to a multiple of 8"


if __name__ == "__main__":
    round_trip_check()
    print("safetensors_io: round trip ok")
