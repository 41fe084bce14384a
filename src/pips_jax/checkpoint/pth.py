"""A safe, torch-free reader for PyTorch ``.pth`` checkpoints.

``torch.save`` writes one of two formats:

* **zip** (torch >= 1.6): a zip archive whose entries share one folder name
  ``<prefix>``: ``<prefix>/data.pkl`` is the pickled object tree, the raw bytes of
  each storage are in ``<prefix>/data/<key>``, and ``<prefix>/byteorder`` (``little``
  or ``big``) and ``<prefix>/version`` describe them. Storages are pickled as
  persistent ids ``('storage', storage_type, key, location, numel)``.
* **legacy** (torch < 1.6, or ``_use_new_zipfile_serialization=False``): a sequence
  of pickles: the magic number ``0x1950a86a20f9469cfc6c``, the protocol version
  ``1001``, a ``sys_info`` dict (with ``little_endian``), the object tree, the list
  of storage keys, then for each key in that order an 8-byte little-endian element
  count followed by the raw bytes. Persistent ids are
  ``('storage', storage_type, root_key, location, numel, view_metadata)``.

In both, a tensor is pickled as a call of ``torch._utils._rebuild_tensor_v2(storage,
storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`` (or one
of its relatives), where the storage is the persistent id above.

Safety model: pickles are only ever read by :class:`_StateDictUnpickler`, whose
``find_class`` resolves a small, explicit allow-list of global names (tensor
rebuilding, storage types, dtypes, ``torch.Size`` and ``collections.OrderedDict``)
to this module's own inert stand-ins; nothing is imported and no other callable is
reachable, so a malicious pickle cannot run code. Any other global is refused with a
:class:`~pips_jax.errors.CheckpointError` naming it. The stand-ins are immutable
(pickle's ``BUILD`` cannot change them), persistent ids other than storages are
refused, every tensor view is bounds-checked against its storage, and tensors are
returned as copies in new C-contiguous :class:`numpy.ndarray` objects. Every problem
with a file (missing, empty, truncated, not a checkpoint, unsafe, inconsistent)
raises :class:`~pips_jax.errors.CheckpointError` with a one-line message naming it.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.lib.stride_tricks import as_strided

from pips_jax.errors import CheckpointError

__all__ = ["LEGACY_MAGIC_NUMBER", "LEGACY_PROTOCOL_VERSION", "load_pth", "load_state_dict"]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
"""The first pickle of a legacy ``torch.save`` stream."""

LEGACY_PROTOCOL_VERSION = 1001
"""The second pickle of a legacy ``torch.save`` stream."""

# A view may repeat storage elements (a zero stride); refuse results that are larger
# than both their storage and this many elements (defence against memory bombs).
_MAX_EXPANDED_ELEMENTS = 1 << 28


class _Invalid(Exception):
    """Bad content found while decoding; the message gets the file path prepended."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _describe_exception(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------- #
# Inert stand-ins for the allowed globals.
# --------------------------------------------------------------------------- #


class _Frozen:
    """Base of the stand-ins handed to pickle: no ``__dict__``, no attribute writes.

    Pickle's ``BUILD`` opcode would otherwise let a file change shared objects.
    """

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} objects are read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} objects are read-only")


class _DType(_Frozen):
    """A torch dtype: ``name`` (``float32``), the numpy dtype its elements are read as."""

    __slots__ = ("name", "read_dtype")

    def __init__(self, name: str, read_dtype: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "read_dtype", np.dtype(read_dtype))

    @property
    def itemsize(self) -> int:
        return self.read_dtype.itemsize

    @property
    def result_dtype(self) -> np.dtype:
        """The dtype of the returned arrays: bfloat16 becomes float32, bool stays bool."""
        if self.name == "bfloat16":
            return np.dtype(np.float32)
        if self.name == "bool":
            return np.dtype(np.bool_)
        return self.read_dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_DTYPES: dict[str, _DType] = {
    name: _DType(name, read)
    for name, read in [
        ("float32", "<f4"),
        ("float64", "<f8"),
        ("float16", "<f2"),
        ("bfloat16", "<u2"),  # converted to float32 by shifting the 16 bits
        ("int64", "<i8"),
        ("int32", "<i4"),
        ("int16", "<i2"),
        ("int8", "i1"),
        ("uint8", "u1"),
        ("bool", "u1"),  # read as bytes, returned as ``!= 0``
        ("uint16", "<u2"),
        ("uint32", "<u4"),
        ("uint64", "<u8"),
    ]
}


class _StorageType(_Frozen):
    """A storage class such as ``torch.FloatStorage`` (``untyped``: ``UntypedStorage``)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _DType) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", dtype)

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_TYPES: dict[str, _StorageType] = {
    name: _StorageType(name, _DTYPES[dtype])
    for name, dtype in [
        ("FloatStorage", "float32"),
        ("DoubleStorage", "float64"),
        ("HalfStorage", "float16"),
        ("BFloat16Storage", "bfloat16"),
        ("LongStorage", "int64"),
        ("IntStorage", "int32"),
        ("ShortStorage", "int16"),
        ("CharStorage", "int8"),
        ("ByteStorage", "uint8"),
        ("BoolStorage", "bool"),
    ]
}
_UNTYPED_STORAGE = _StorageType("UntypedStorage", _DTYPES["uint8"])


class _Root:
    """The bytes of one storage key (filled after the object pickle in legacy files)."""

    __slots__ = ("key", "dtype", "numel", "big_endian", "data")

    def __init__(self, key: str, dtype: _DType, numel: int, big_endian: bool) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.big_endian = big_endian
        self.data: np.ndarray | None = None  # 1-D uint8


class _Storage(_Frozen):
    """A typed window ``[byte_offset, byte_offset + numel * itemsize)`` of a root."""

    __slots__ = ("root", "dtype", "numel", "byte_offset")

    def __init__(self, root: _Root, dtype: _DType, numel: int, byte_offset: int = 0) -> None:
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "numel", numel)
        object.__setattr__(self, "byte_offset", byte_offset)

    def elements(self, dtype: _DType) -> np.ndarray:
        """The storage as a 1-D array of ``dtype.read_dtype`` (file byte order)."""
        root = self.root
        if root.data is None:
            raise _Invalid(
                f"storage {root.key!r} is referenced by a tensor but its data is not in the file (expected it in the storage list)"
            )
        start = self.byte_offset
        stop = start + self.numel * self.dtype.itemsize
        if stop > root.data.size:
            raise _Invalid(
                f"storage {root.key!r} is too short: expected at least {stop} bytes, found {root.data.size}"
            )
        chunk = root.data[start:stop]
        usable = chunk.size - chunk.size % dtype.itemsize
        order = ">" if root.big_endian else "<"
        return chunk[:usable].view(dtype.read_dtype.newbyteorder(order))


class _Tensor(_Frozen):
    """A tensor to build after unpickling: dtype, storage, offset, size and stride."""

    __slots__ = ("storage", "dtype", "offset", "size", "stride")

    def __init__(
        self,
        storage: _Storage,
        dtype: _DType,
        offset: int,
        size: tuple[int, ...],
        stride: tuple[int, ...],
    ) -> None:
        object.__setattr__(self, "storage", storage)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "stride", stride)

    def to_numpy(self) -> np.ndarray:
        """A new C-contiguous array with the tensor's values (bounds-checked view, copied)."""
        dtype, size, stride, offset = self.dtype, self.size, self.stride, self.offset
        numel = math.prod(size)
        if numel == 0:
            return np.zeros(size, dtype.result_dtype)
        elements = self.storage.elements(dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= elements.size:
            raise _Invalid(
                f"tensor view out of bounds of storage {self.storage.root.key!r}: expected the largest element index (offset {offset} + sum((size - 1) * stride), size {size}, stride {stride}) below the storage length {elements.size}, found {last}"
            )
        if numel > max(elements.size, _MAX_EXPANDED_ELEMENTS):
            raise _Invalid(
                f"tensor of size {size} repeats its storage {self.storage.root.key!r} ({elements.size} elements) into {numel} elements, more than the {_MAX_EXPANDED_ELEMENTS} allowed"
            )
        itemsize = elements.itemsize
        byte_strides = tuple(
            0 if n == 1 else s * itemsize for n, s in zip(size, stride, strict=True)
        )
        view = as_strided(elements[offset:], shape=size, strides=byte_strides, writeable=False)
        # np.array copies into a new C-ordered array in native byte order.
        values = np.array(view, dtype=dtype.read_dtype.newbyteorder("="), order="C")
        if dtype.name == "bool":
            return values != 0
        if dtype.name == "bfloat16":
            out = np.empty(values.shape, np.float32)
            np.left_shift(values.astype(np.uint32), 16, out=out.view(np.uint32))
            return out
        return values


class _OrderedDict(dict):
    """Stand-in for ``collections.OrderedDict``; ``BUILD`` state (``_metadata``) is ignored."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        # torch state dicts carry ``_metadata`` (module versions) as instance state.
        pass


class _SafeFunction(_Frozen):
    """An allowed callable global, named ``qualname`` (``torch._utils._rebuild_tensor_v2``)."""

    __slots__ = ("qualname", "function")

    def __init__(self, qualname: str, function: Callable[..., Any]) -> None:
        object.__setattr__(self, "qualname", qualname)
        object.__setattr__(self, "function", function)

    def __call__(self, *args: Any) -> Any:
        try:
            return self.function(*args)
        except _Invalid as exc:
            raise _Invalid(f"{self.qualname}: {exc}") from None
        except TypeError as exc:
            raise _Invalid(f"{self.qualname}: bad arguments ({_one_line(str(exc))})") from None

    def __repr__(self) -> str:
        return self.qualname


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an int for {what}, found {type(value).__name__}")
    if value < 0:
        raise _Invalid(f"expected a non-negative {what}, found {value}")
    return value


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple | list):
        raise _Invalid(f"expected a tuple of ints for {what}, found {type(value).__name__}")
    return tuple(_int(v, what) for v in value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any, dtype: _DType | None) -> _Tensor:
    if not isinstance(storage, _Storage):
        raise _Invalid(f"expected a storage, found {type(storage).__name__}")
    size_t, stride_t = _ints(size, "size"), _ints(stride, "stride")
    if len(size_t) != len(stride_t):
        raise _Invalid(f"size {size_t} and stride {stride_t} have different lengths")
    return _Tensor(
        storage, dtype or storage.dtype, _int(offset, "storage offset"), size_t, stride_t
    )


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> _Tensor:
    return _tensor(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    metadata: Any = None,
) -> _Tensor:
    return _tensor(storage, storage_offset, size, stride, None)


def _rebuild_tensor_v3(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    dtype: Any,
    metadata: Any = None,
) -> _Tensor:
    if not isinstance(dtype, _DType):
        raise _Invalid(f"expected a torch dtype, found {type(dtype).__name__}")
    return _tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> _Tensor:
    if not isinstance(data, _Tensor):
        raise _Invalid(f"expected a tensor, found {type(data).__name__}")
    return data


def _rebuild_parameter_with_state(
    data: Any, requires_grad: Any, backward_hooks: Any, state: Any
) -> _Tensor:
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _ordered_dict(items: Any = ()) -> _OrderedDict:
    result = _OrderedDict()
    if isinstance(items, dict):
        items = list(items.items())
    if not isinstance(items, list | tuple):
        raise _Invalid(f"expected a list of (key, value) pairs, found {type(items).__name__}")
    for pair in items:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise _Invalid("expected (key, value) pairs")
        result[pair[0]] = pair[1]
    return result


def _size(dims: Any = ()) -> tuple[int, ...]:
    return _ints(dims, "torch.Size")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _SafeFunction("collections.OrderedDict", _ordered_dict),
    ("torch", "Size"): _SafeFunction("torch.Size", _size),
    ("torch.storage", "UntypedStorage"): _UNTYPED_STORAGE,
    ("torch", "UntypedStorage"): _UNTYPED_STORAGE,
    **{("torch", name): storage_type for name, storage_type in _STORAGE_TYPES.items()},
    **{("torch", name): dtype for name, dtype in _DTYPES.items()},
    **{
        ("torch._utils", f.__name__): _SafeFunction(f"torch._utils.{f.__name__}", f)
        for f in (
            _rebuild_tensor,
            _rebuild_tensor_v2,
            _rebuild_tensor_v3,
            _rebuild_parameter,
            _rebuild_parameter_with_state,
        )
    },
}


def allowed_globals() -> list[str]:
    """The ``module.name`` globals a checkpoint pickle may reference, sorted."""
    return sorted(f"{module}.{name}" for module, name in _ALLOWED_GLOBALS)


# --------------------------------------------------------------------------- #
# Unpickling.
# --------------------------------------------------------------------------- #


class _StateDictUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals, to inert stand-ins."""

    def __init__(
        self,
        file: BinaryIO,
        path: Path,
        persistent_load: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._persistent_loader = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise CheckpointError(
                f"{self._path}: refused to load the pickle global '{module}.{name}': expected only tensors, storages, dtypes and containers (allowed: torch._utils._rebuild_tensor*, torch.*Storage, torch dtypes, torch.Size, collections.OrderedDict); the file may try to run code"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_loader is None:
            raise _Invalid(
                f"unexpected persistent id {_short_repr(pid)} in a pickle without storages"
            )
        return self._persistent_loader(pid)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _BoundedReader:
    """A read-only view of ``file`` that never reads (or allocates) past its end."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        position = file.tell()
        self._end = file.seek(0, os.SEEK_END)
        file.seek(position)

    def _remaining(self) -> int:
        return max(0, self._end - self._file.tell())

    def read(self, n: int = -1) -> bytes:
        remaining = self._remaining()
        return self._file.read(remaining if n is None or n < 0 else min(n, remaining))

    def readline(self) -> bytes:
        return self._file.readline(self._remaining())

    def tell(self) -> int:
        return self._file.tell()


def _unpickle(
    file: BinaryIO,
    path: Path,
    what: str,
    persistent_load: Callable[[Any], Any] | None = None,
    failure: str | None = None,
) -> Any:
    """Reads one pickle from ``file`` with the restricted unpickler, wrapping errors.

    The opcodes are first parsed without being executed (``pickletools.genops``), so
    that truncated data and absurd lengths are reported before anything is built.
    ``failure`` replaces the start of the message for a malformed pickle.
    """
    failure = failure or f"{path}: truncated or corrupt {what}: expected a complete pickle"
    try:
        start = file.tell()
        for _ in pickletools.genops(_BoundedReader(file)):
            pass
        file.seek(start)
        return _StateDictUnpickler(file, path, persistent_load).load()
    except CheckpointError:
        raise
    except _Invalid as exc:
        raise CheckpointError(f"{path}: invalid {what}: {exc}") from None
    except Exception as exc:  # untrusted bytes: any failure means a corrupt file
        raise CheckpointError(f"{failure}, found an error ({_describe_exception(exc)})") from None


def _text(value: Any, what: str) -> str:
    if isinstance(value, bytes):  # pickles written by Python 2
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            raise _Invalid(f"expected an ASCII {what}, found {value!r}") from None
    if not isinstance(value, str):
        raise _Invalid(f"expected a string {what}, found {type(value).__name__}")
    return value


def _storage_pid(pid: Any, length: int) -> tuple[_StorageType, str, int, tuple[Any, ...]]:
    """Checks ``('storage', storage_type, key, location, numel, *rest)``."""
    if not isinstance(pid, tuple) or not pid or _text(pid[0], "persistent id type") != "storage":
        raise _Invalid(
            f"expected a persistent id ('storage', storage_type, key, location, numel{', view_metadata' if length == 6 else ''}), found {_short_repr(pid)}"
        )
    if len(pid) != length:
        raise _Invalid(
            f"expected a storage persistent id of {length} items, found {_short_repr(pid)}"
        )
    storage_type = pid[1]
    if not isinstance(storage_type, _StorageType):
        raise _Invalid(
            f"expected a storage type in persistent id, found {_short_repr(storage_type)}"
        )
    key = _text(pid[2], "storage key")
    _text(pid[3], "storage location")
    numel = _int(pid[4], "storage size")
    return storage_type, key, numel, pid[5:]


# --------------------------------------------------------------------------- #
# Turning the unpickled tree into plain Python and numpy objects.
# --------------------------------------------------------------------------- #


def _finalize(tree: Any, path: Path) -> Any:
    """Replaces stand-ins: tensors -> arrays, OrderedDict -> dict, dtypes -> numpy dtypes."""
    memo: dict[int, Any] = {}

    def visit(obj: Any) -> Any:
        key = id(obj)
        if key in memo:
            return memo[key]
        result: Any
        if isinstance(obj, _Tensor):
            result = obj.to_numpy()
        elif isinstance(obj, dict):
            result = {}
            memo[key] = result
            for k, v in obj.items():
                result[visit(k)] = visit(v)
        elif isinstance(obj, list):
            result = []
            memo[key] = result
            result.extend(visit(v) for v in obj)
        elif isinstance(obj, tuple):
            result = tuple(visit(v) for v in obj)
        elif isinstance(obj, set | frozenset):
            result = type(obj)(visit(v) for v in obj)
        elif isinstance(obj, _Storage):  # a storage saved on its own: its elements
            result = _Tensor(obj, obj.dtype, 0, (obj.numel,), (1,)).to_numpy()
        elif isinstance(obj, _DType):
            result = obj.result_dtype
        elif isinstance(obj, _Frozen):
            raise _Invalid(f"expected data, found the bare global {obj!r} used as a value")
        else:
            result = obj
        memo[key] = result
        return result

    try:
        return visit(tree)
    except CheckpointError:
        raise
    except _Invalid as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: could not rebuild the checkpoint's objects: expected tensors in plain containers, found an error ({_describe_exception(exc)})"
        ) from None


# --------------------------------------------------------------------------- #
# The two file formats.
# --------------------------------------------------------------------------- #


def _load_zip(file: BinaryIO, path: Path) -> Any:
    try:
        archive = zipfile.ZipFile(file)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: truncated or corrupt zip checkpoint: expected a readable zip archive with <prefix>/data.pkl, found an error ({_describe_exception(exc)})"
        ) from None
    with archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pickles:
            raise CheckpointError(
                f"{path}: not a torch.save zip checkpoint: expected an entry <prefix>/data.pkl, found {_short_repr(names[:5])}"
            )
        if len(pickles) > 1:
            first_prefix = names[0].split("/", 1)[0] + "/data.pkl"
            pickles = [first_prefix] if first_prefix in pickles else pickles[:1]
        prefix = pickles[0][: -len("data.pkl")]
        name_set = set(names)

        def read(name: str) -> bytes:
            try:
                return archive.read(name)
            except Exception as exc:
                raise CheckpointError(
                    f"{path}: truncated or corrupt zip checkpoint: expected a readable entry {name}, found an error ({_describe_exception(exc)})"
                ) from None

        big_endian = False
        if prefix + "byteorder" in name_set:
            order = read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(
                    f"{path}: expected byteorder 'little' or 'big' in {prefix}byteorder, found {order!r}"
                )
            big_endian = order == "big"

        roots: dict[str, _Root] = {}

        def persistent_load(pid: Any) -> _Storage:
            storage_type, key, numel, _ = _storage_pid(pid, 5)
            dtype = storage_type.dtype
            root = roots.get(key)
            if root is None:
                record = prefix + "data/" + key
                if record not in name_set:
                    raise CheckpointError(
                        f"{path}: storage {key!r} is missing: expected an entry {record} in the archive, found none"
                    )
                root = roots[key] = _Root(key, dtype, numel, big_endian)
                root.data = np.frombuffer(read(record), dtype=np.uint8)
            found = 0 if root.data is None else root.data.size
            if numel * dtype.itemsize > found:
                raise CheckpointError(
                    f"{path}: storage {key!r} is too short: expected {numel} {dtype.name} elements ({numel * dtype.itemsize} bytes), found {found} bytes"
                )
            return _Storage(root, dtype, numel)

        data = read(pickles[0])
        tree = _unpickle(io.BytesIO(data), path, f"pickle {pickles[0]}", persistent_load)
    return _finalize(tree, path)


def _file_size(file: BinaryIO) -> int:
    position = file.tell()
    size = file.seek(0, os.SEEK_END)
    file.seek(position)
    return size


def _load_legacy(file: BinaryIO, path: Path, head: bytes) -> Any:
    not_a_checkpoint = f"{path}: not a PyTorch checkpoint: expected a zip archive (torch >= 1.6) or a legacy torch.save stream starting with the pickled magic number {LEGACY_MAGIC_NUMBER:#x}"
    found = f"{not_a_checkpoint}, found bytes {head[:16]!r}..."
    magic = _unpickle(file, path, "legacy magic number", failure=found)
    if magic != LEGACY_MAGIC_NUMBER or type(magic) is not int:
        raise CheckpointError(f"{not_a_checkpoint}, found a pickle of {_short_repr(magic)}")
    version = _unpickle(file, path, "legacy protocol version")
    if version != LEGACY_PROTOCOL_VERSION or type(version) is not int:
        raise CheckpointError(
            f"{path}: unsupported legacy checkpoint: expected protocol version {LEGACY_PROTOCOL_VERSION}, found {_short_repr(version)}"
        )
    sys_info = _unpickle(file, path, "legacy sys_info")
    if not isinstance(sys_info, dict):
        raise CheckpointError(
            f"{path}: corrupt legacy checkpoint: expected a sys_info dict, found {_short_repr(sys_info)}"
        )
    little_endian = sys_info.get("little_endian", True)
    if not isinstance(little_endian, bool):
        raise CheckpointError(
            f"{path}: corrupt legacy checkpoint: expected sys_info['little_endian'] to be a bool, found {_short_repr(little_endian)}"
        )

    roots: dict[str, _Root] = {}

    def persistent_load(pid: Any) -> _Storage:
        storage_type, key, numel, (view_metadata,) = _storage_pid(pid, 6)
        root = roots.get(key)
        if root is None:
            root = roots[key] = _Root(key, storage_type.dtype, numel, not little_endian)
        if view_metadata is None:
            return _Storage(root, root.dtype, root.numel)
        if not isinstance(view_metadata, tuple) or len(view_metadata) != 3:
            raise _Invalid(
                f"expected storage view metadata (view_key, offset, size), found {_short_repr(view_metadata)}"
            )
        offset = _int(view_metadata[1], "storage view offset")
        size = _int(view_metadata[2], "storage view size")
        return _Storage(root, root.dtype, size, offset * root.dtype.itemsize)

    tree = _unpickle(file, path, "legacy object pickle", persistent_load)
    keys = _unpickle(file, path, "legacy storage key list")
    if not isinstance(keys, list):
        raise CheckpointError(
            f"{path}: corrupt legacy checkpoint: expected a list of storage keys, found {_short_repr(keys)}"
        )
    file_size = _file_size(file)
    for raw_key in keys:
        try:
            key = _text(raw_key, "storage key")
        except _Invalid as exc:
            raise CheckpointError(f"{path}: corrupt legacy checkpoint: {exc}") from None
        root = roots.get(key)
        if root is None:
            raise CheckpointError(
                f"{path}: corrupt legacy checkpoint: expected storage {key!r} of the storage list to be referenced by the object pickle, found no reference"
            )
        header = file.read(8)
        if len(header) != 8:
            raise CheckpointError(
                f"{path}: truncated legacy checkpoint: expected an 8-byte element count for storage {key!r}, found {len(header)} bytes"
            )
        (count,) = struct.unpack("<q", header)
        if count != root.numel:
            raise CheckpointError(
                f"{path}: corrupt legacy checkpoint: expected {root.numel} elements for storage {key!r}, found the count {count}"
            )
        nbytes = count * root.dtype.itemsize
        remaining = file_size - file.tell()
        if nbytes > remaining:
            raise CheckpointError(
                f"{path}: truncated legacy checkpoint: expected {nbytes} bytes of data for storage {key!r}, found {remaining}"
            )
        root.data = np.frombuffer(file.read(nbytes), dtype=np.uint8)
    return _finalize(tree, path)


# --------------------------------------------------------------------------- #
# Public API.
# --------------------------------------------------------------------------- #


def load_pth(path: str | os.PathLike[str]) -> Any:
    """Loads a PyTorch ``.pth`` checkpoint without torch and without running pickle code.

    Both ``torch.save`` formats are read (zip, torch >= 1.6, and legacy). Only an
    allow-list of pickle globals is accepted (see the module docstring).

    Args:
        path: the checkpoint file.

    Returns:
        The saved object tree: dicts (``OrderedDict`` becomes ``dict``, order kept),
        lists, tuples, numbers, strings and ``None``; every tensor becomes a new
        C-contiguous :class:`numpy.ndarray` of the tensor's dtype and shape
        (bfloat16 tensors become float32, exactly).

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a checkpoint,
            references a global outside the allow-list, or is inconsistent (a
            missing storage, a tensor view outside its storage, ...).
    """
    path = Path(os.fspath(path))
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no such file: expected a PyTorch .pth checkpoint, found nothing at this path"
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"{path}: cannot be read: expected a PyTorch .pth checkpoint file, found an error ({_describe_exception(exc)})"
        ) from None
    with file:
        try:
            head = file.read(16)
            file.seek(0)
        except OSError as exc:
            raise CheckpointError(
                f"{path}: cannot be read: expected a PyTorch .pth checkpoint file, found an error ({_describe_exception(exc)})"
            ) from None
        if not head:
            raise CheckpointError(
                f"{path}: empty file: expected a PyTorch checkpoint (a zip archive or a legacy torch.save stream), found 0 bytes"
            )
        if head.startswith(b"PK\x03\x04"):
            return _load_zip(file, path)
        return _load_legacy(file, path, head)


def load_state_dict(
    path: str | os.PathLike[str], key: str = "model_state_dict"
) -> dict[str, np.ndarray]:
    """Loads the parameters of a ``.pth`` checkpoint as a flat ``{name: array}`` dict.

    Args:
        path: the checkpoint file (read with :func:`load_pth`).
        key: the entry holding the state dict when the checkpoint is a dict of several
            things (``{"model_state_dict": ..., "optimizer_state_dict": ...}``).

    Returns:
        ``checkpoint[key]`` when the checkpoint is a dict containing ``key``, otherwise
        the checkpoint itself when it is already a flat state dict; names in file order.

    Raises:
        CheckpointError: the file cannot be loaded (see :func:`load_pth`), has neither
            ``key`` nor the form of a state dict, or a state dict entry is not a tensor.
    """
    obj = load_pth(path)
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path}: expected a dict (a state dict, or a checkpoint with the key {key!r}), found {type(obj).__name__}"
        )
    if key in obj:
        state, where = obj[key], f"{key!r}"
        if not isinstance(state, dict):
            raise CheckpointError(
                f"{path}: expected {where} to be a state dict (name -> tensor), found {type(state).__name__}"
            )
    else:
        state, where = obj, "the top-level dict"
        if not any(isinstance(v, np.ndarray) for v in state.values()):
            raise CheckpointError(
                f"{path}: expected a state dict (name -> tensor) or a dict with the key {key!r}, found a dict with keys {_short_repr(list(state))}"
            )
    for name, value in state.items():
        if not isinstance(name, str):
            raise CheckpointError(
                f"{path}: expected string parameter names in {where}, found {_short_repr(name)}"
            )
        if not isinstance(value, np.ndarray):
            raise CheckpointError(
                f"{path}: expected a tensor for {name!r} in {where}, found {type(value).__name__}"
            )
    return dict(state)
