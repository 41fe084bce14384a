"""A minimal writer of torch.save-style zip checkpoints, for tests (no torch needed).

It emits the same pickle structure torch >= 1.6 writes for a dict of contiguous
float32 tensors: ``torch._utils._rebuild_tensor_v2(<persistent storage>, offset,
size, stride, False, OrderedDict())`` with persistent ids
``("storage", torch.FloatStorage, key, "cpu", numel)``.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Mapping

import numpy as np

_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.int64): "LongStorage"}


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _obj(value, storages: list[np.ndarray]) -> bytes:
    if isinstance(value, np.ndarray):
        key = str(len(storages))
        storages.append(np.ascontiguousarray(value))
        pid = _tuple(
            [
                _str("storage"),
                _global("torch", _STORAGE[value.dtype]),
                _str(key),
                _str("cpu"),
                _int(value.size),
            ]
        )
        strides = [s // value.itemsize for s in np.ascontiguousarray(value).strides]
        args = [
            pid + b"Q",  # BINPERSID
            _int(0),
            _tuple([_int(d) for d in value.shape]),
            _tuple([_int(s) for s in strides]),
            b"\x89",  # False
            _global("collections", "OrderedDict") + b")R",
        ]
        return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"
    if isinstance(value, Mapping):
        out = b"}"
        for k, v in value.items():
            out += _str(k) + _obj(v, storages) + b"s"
        return out
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, int):
        return _int(value)
    raise TypeError(type(value))


def write_pth(path, obj: Mapping) -> None:
    """Writes ``obj`` (nested dicts of str/int/ndarray) as a zip-format checkpoint."""
    storages: list[np.ndarray] = []
    data = b"\x80\x02" + _obj(obj, storages) + b"."
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data)
        z.writestr("archive/byteorder", "little")
        for i, s in enumerate(storages):
            z.writestr(f"archive/data/{i}", s.tobytes())
        z.writestr("archive/version", "3\n")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
