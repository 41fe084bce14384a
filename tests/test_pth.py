"""Tests of the safe, torch-free ``.pth`` reader (pips_jax.checkpoint.pth).

The fixtures in ``data/`` were written by real ``torch.save``; the other checkpoints
are built here opcode by opcode (protocol 2), so no torch is needed.
"""

from __future__ import annotations

import pickle
import pickletools
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pips_jax.checkpoint.pth import (
    LEGACY_MAGIC_NUMBER,
    LEGACY_PROTOCOL_VERSION,
    allowed_globals,
    load_pth,
    load_state_dict,
)
from pips_jax.errors import CheckpointError

DATA = Path(__file__).parent / "data"
TINY = ["tiny_zip.pth", "tiny_legacy.pth"]


# --------------------------------------------------------------------------- #
# A tiny protocol-2 pickle writer, enough to write what torch.save writes.
# --------------------------------------------------------------------------- #


def g(module: str, name: str) -> bytes:
    """GLOBAL opcode."""
    return b"c" + f"{module}\n{name}\n".encode()


def s(text: str) -> bytes:
    """BINUNICODE opcode."""
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def i(value: int) -> bytes:
    """BININT opcode, or LONG1 for large values."""
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def t(*items: bytes) -> bytes:
    """MARK ... TUPLE."""
    return b"(" + b"".join(items) + b"t"


def ints(values) -> bytes:
    return t(*(i(v) for v in values))


NONE, FALSE = b"N", b"\x89"


def call(func: bytes, *args: bytes) -> bytes:
    """REDUCE: ``func(*args)``."""
    return func + t(*args) + b"R"


def ordered_dict(items: list[tuple[str, bytes]] = (), state: bytes = b"") -> bytes:
    out = g("collections", "OrderedDict") + b")R"
    if items:
        out += b"(" + b"".join(s(k) + v for k, v in items) + b"u"
    if state:
        out += state + b"b"  # BUILD
    return out


def dict_(items: list[tuple[str, bytes]]) -> bytes:
    return b"}(" + b"".join(s(k) + v for k, v in items) + b"u"


def storage_pid(storage_type, key, numel, *, legacy=False, view=None) -> bytes:
    module, name = storage_type if isinstance(storage_type, tuple) else ("torch", storage_type)
    items = [s("storage"), g(module, name), s(key), s("cpu"), i(numel)]
    if legacy:
        items.append(NONE if view is None else t(s(view[0]), i(view[1]), i(view[2])))
    return t(*items) + b"Q"  # BINPERSID


def tensor(storage_type, key, numel, offset, size, stride, *, legacy=False, view=None) -> bytes:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""
    pid = storage_pid(storage_type, key, numel, legacy=legacy, view=view)
    return call(
        g("torch._utils", "_rebuild_tensor_v2"),
        pid,
        i(offset),
        ints(size),
        ints(stride),
        FALSE,
        ordered_dict(),
    )


def pickled(body: bytes) -> bytes:
    data = b"\x80\x02" + body + b"."
    list(pickletools.genops(data))  # the test's own pickles must be well formed
    return data


def write_zip(path: Path, body: bytes, storages: dict[str, bytes], byteorder="little") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickled(body))
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
        z.writestr("archive/version", "3\n")
    return path


def write_legacy(path: Path, body: bytes, storages: list[tuple[str, int, bytes]]) -> Path:
    """``storages``: ``(key, element count, raw bytes)`` in the order they are written."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    out = pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2)
    out += pickle.dumps(LEGACY_PROTOCOL_VERSION, protocol=2)
    out += pickle.dumps(sys_info, protocol=2)
    out += pickled(body)
    out += pickle.dumps([key for key, _, _ in storages], protocol=2)
    for _, count, raw in storages:
        out += struct.pack("<q", count) + raw
    path.write_bytes(out)
    return path


def bf16_bits(values: np.ndarray) -> np.ndarray:
    return (np.asarray(values, np.float32).view(np.uint32) >> 16).astype(np.uint16)


# --------------------------------------------------------------------------- #
# The torch-written fixtures.
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(DATA / "tiny_expected.npz") as npz:
        return {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("name", TINY)
def test_tiny_state_dict_matches_expected(name, expected):
    state = load_state_dict(DATA / name)
    assert list(state) == list(expected)  # same keys, same order
    for key, want in expected.items():
        got = state[key]
        assert isinstance(got, np.ndarray), key
        assert got.dtype == want.dtype, key
        assert got.shape == want.shape, key
        assert np.array_equal(got, want), key
        assert got.flags.c_contiguous and got.flags.owndata and got.flags.writeable, key
    assert state["half"].dtype == np.float16 and state["count"].dtype == np.int64
    np.testing.assert_array_equal(state["count"], [0, 1, 2, 3, 4])


def test_zip_transposed_view_is_rebuilt_from_strides(expected):
    # ffeat_updater.0.weight was saved as a transposed view: (5, 4) with stride (1, 5).
    with zipfile.ZipFile(DATA / "tiny_zip.pth") as z:
        raw = np.frombuffer(z.read("tiny_zip/data/6"), "<f4")
    want = expected["ffeat_updater.0.weight"]
    assert np.array_equal(raw, want.T.ravel())
    assert not np.array_equal(raw, want.ravel())
    assert np.array_equal(load_state_dict(DATA / "tiny_zip.pth")["ffeat_updater.0.weight"], want)


@pytest.mark.parametrize("name", TINY)
def test_tiny_full_tree_and_optimizer_state(name):
    tree = load_pth(str(DATA / name))  # str paths work as well as Path
    assert type(tree) is dict
    assert list(tree) == ["optimizer_state_dict", "model_state_dict"]
    assert type(tree["model_state_dict"]) is dict  # OrderedDict -> dict
    opt = tree["optimizer_state_dict"]
    group = opt["param_groups"][0]
    assert isinstance(group["betas"], tuple)
    assert group["betas"] == (0.9, 0.999)
    assert all(isinstance(b, float) for b in group["betas"])
    assert group["lr"] == 3e-4 and group["eps"] == 1e-8 and group["weight_decay"] == 1e-4
    assert group["amsgrad"] is False and group["params"] == [0]
    state = opt["state"][0]
    step = state["step"]
    assert isinstance(step, np.ndarray) and step.shape == () and step.dtype == np.float32
    assert float(step) == 200000.0
    for moment in ("exp_avg", "exp_avg_sq"):
        assert state[moment].dtype == np.float32
        np.testing.assert_array_equal(state[moment], np.zeros(4, np.float32))


def test_zip_and_legacy_fixtures_agree():
    a, b = load_pth(DATA / TINY[0]), load_pth(DATA / TINY[1])
    for key, value in a["model_state_dict"].items():
        assert np.array_equal(value, b["model_state_dict"][key])


# --------------------------------------------------------------------------- #
# Safety.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("loader", [load_pth, load_state_dict])
def test_malicious_checkpoint_is_refused_without_running_code(loader, tmp_path, monkeypatch):
    src = tmp_path / "src" / "malicious.pth"
    src.parent.mkdir()
    shutil.copy(DATA / "malicious.pth", src)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(CheckpointError, match=r"'posix\.system'") as info:
        loader(src)
    message = str(info.value)
    assert str(src) in message and "\n" not in message
    assert not (work / "pwned.txt").exists()
    assert not list(work.iterdir())


def test_allow_list_is_small_and_explicit():
    allowed = allowed_globals()
    assert "collections.OrderedDict" in allowed
    assert "torch._utils._rebuild_tensor_v2" in allowed
    assert "torch.FloatStorage" in allowed and "torch.BFloat16Storage" in allowed
    assert "torch.storage.UntypedStorage" in allowed and "torch.float32" in allowed
    assert all(a.startswith(("torch.", "torch._utils.", "collections.")) for a in allowed)
    assert not any(a.startswith(("builtins.", "os.", "posix.", "subprocess.")) for a in allowed)


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "getattr"), ("builtins", "eval"), ("torch", "load"), ("numpy", "ndarray")],
)
def test_other_globals_are_refused_by_name(tmp_path, module, name):
    body = dict_([("x", call(g(module, name), s("a"), s("b")))])
    path = write_zip(tmp_path / "bad.pth", body, {})
    with pytest.raises(CheckpointError, match=rf"'{module}\.{name}'") as info:
        load_pth(path)
    assert str(path) in str(info.value)


def test_refused_global_in_legacy_file(tmp_path):
    body = dict_([("x", call(g("os", "system"), s("echo hi > pwned.txt")))])
    path = write_legacy(tmp_path / "bad.pth", body, [])
    with pytest.raises(CheckpointError, match=r"'os\.system'"):
        load_pth(path)


def test_allowed_globals_cannot_be_modified_by_build(tmp_path):
    # BUILD on an allowed global must not change the shared stand-in objects.
    for target in (g("torch", "float32"), g("torch._utils", "_rebuild_tensor_v2")):
        body = dict_([("x", target + dict_([("name", s("evil"))]) + b"b")])
        with pytest.raises(CheckpointError):
            load_pth(write_zip(tmp_path / "build.pth", body, {}))
        slot_state = t(NONE, dict_([("__defaults__", t(i(1)))]))
        with pytest.raises(CheckpointError):
            load_pth(
                write_zip(tmp_path / "build.pth", dict_([("x", target + slot_state + b"b")]), {})
            )
    # the reader still works afterwards
    assert load_state_dict(DATA / "tiny_zip.pth")["count"].tolist() == [0, 1, 2, 3, 4]


def test_non_storage_persistent_id_is_refused(tmp_path):
    body = dict_([("m", t(s("module"), s("Net"), s("net.py"), s("source")) + b"Q")])
    with pytest.raises(CheckpointError, match="persistent id"):
        load_pth(write_zip(tmp_path / "pid.pth", body, {}))
    legacy = dict_([("m", t(s("module"), s("Net"), s("net.py"), s("source")) + b"Q")])
    with pytest.raises(CheckpointError, match="persistent id"):
        load_pth(write_legacy(tmp_path / "pid_legacy.pth", legacy, []))


# --------------------------------------------------------------------------- #
# Broken files.
# --------------------------------------------------------------------------- #


def _cuts(size: int) -> list[int]:
    return sorted(
        {1, 10, 15, 40, 137, size // 4, size // 2, 3 * size // 4, size - 100, size - 8, size - 1}
    )


@pytest.mark.parametrize("name", TINY)
def test_truncated_files_raise_checkpoint_error(name, tmp_path):
    data = (DATA / name).read_bytes()
    for cut in _cuts(len(data)):
        path = tmp_path / f"cut_{cut}_{name}"
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            load_pth(path)
        message = str(info.value)
        assert str(path) in message and "\n" not in message, (cut, message)


def test_truncated_legacy_storage_data_is_reported(tmp_path):
    data = (DATA / "tiny_legacy.pth").read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[:-3])
    with pytest.raises(
        CheckpointError, match=r"truncated legacy checkpoint: expected 48 bytes of data .*found 45"
    ):
        load_pth(path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"", "empty file"),
        (np.random.default_rng(0).bytes(4096), "not a PyTorch checkpoint"),
        (b"\x80" + np.random.default_rng(1).bytes(300), "not a PyTorch checkpoint"),
        (b"hello, this is a text file\nnot a checkpoint\n", "not a PyTorch checkpoint"),
        (b"I12\n.", "not a PyTorch checkpoint"),  # a valid pickle of the wrong thing
        (b"PK\x03\x04 junk that is no zip archive", "corrupt zip checkpoint"),
    ],
)
def test_non_checkpoints_raise_checkpoint_error(tmp_path, content, pattern):
    path = tmp_path / "file.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_pth(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_pth(tmp_path / "absent.pth")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_pth(tmp_path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hi")
    with pytest.raises(CheckpointError, match="expected an entry <prefix>/data.pkl"):
        load_pth(path)


def test_zip_missing_storage_record(tmp_path):
    body = dict_([("w", tensor("FloatStorage", "0", 4, 0, [4], [1]))])
    path = write_zip(tmp_path / "missing.pth", body, {})
    with pytest.raises(CheckpointError, match=r"expected an entry archive/data/0") as info:
        load_pth(path)
    assert str(path) in str(info.value)


def test_zip_storage_record_too_short(tmp_path):
    body = dict_([("w", tensor("FloatStorage", "0", 4, 0, [4], [1]))])
    path = write_zip(tmp_path / "short.pth", body, {"0": np.zeros(3, "<f4").tobytes()})
    with pytest.raises(CheckpointError, match="too short"):
        load_pth(path)


def test_zip_corrupt_storage_record_crc(tmp_path):
    raw = np.arange(4, dtype="<f4").tobytes()
    body = dict_([("w", tensor("FloatStorage", "0", 4, 0, [4], [1]))])
    path = write_zip(tmp_path / "crc.pth", body, {"0": raw})
    data = path.read_bytes()
    at = data.index(raw)
    path.write_bytes(data[:at] + b"\xff" + data[at + 1 :])
    with pytest.raises(CheckpointError, match="archive/data/0"):
        load_pth(path)


# --------------------------------------------------------------------------- #
# Hand-built checkpoints: offsets, strides, dtypes, bounds.
# --------------------------------------------------------------------------- #


def test_zip_storage_offset_and_custom_strides(tmp_path):
    base = np.arange(20, dtype=np.float32) * 1.5 - 7.0
    longs = np.array([5, -3, 2**40, 7, -(2**50), 11], np.int64)
    body = ordered_dict(
        [
            ("a", tensor("FloatStorage", "0", 20, 3, [2, 3], [1, 4])),  # offset + strides
            ("b", tensor("FloatStorage", "0", 20, 19, [], [])),  # scalar at the end
            ("c", tensor("FloatStorage", "0", 20, 2, [3, 2, 2], [6, 0, 2])),  # stride 0
            ("d", tensor("LongStorage", "1", 6, 1, [2, 2], [2, 1])),
            ("e", tensor("FloatStorage", "0", 20, 5, [0, 3], [3, 1])),  # empty
            ("f", tensor("FloatStorage", "0", 20, 4, [1, 3], [99999999999, 1])),  # size-1 dim
        ]
    )
    path = write_zip(
        tmp_path / "strided.pth", body, {"0": base.astype("<f4").tobytes(), "1": longs.tobytes()}
    )
    state = load_state_dict(path)
    assert list(state) == ["a", "b", "c", "d", "e", "f"]
    want_a = np.array([[base[3 + r + 4 * c] for c in range(3)] for r in range(2)], np.float32)
    want_c = np.array(
        [[[base[2 + 6 * x + 2 * z] for z in range(2)] for _ in range(2)] for x in range(3)],
        np.float32,
    )
    expected = {
        "a": want_a,
        "b": np.array(base[19], np.float32),
        "c": want_c,
        "d": np.array([[-3, 2**40], [7, -(2**50)]], np.int64),
        "e": np.zeros((0, 3), np.float32),
        "f": base[4:7].reshape(1, 3),
    }
    for key, want in expected.items():
        got = state[key]
        assert got.dtype == want.dtype and got.shape == want.shape, key
        assert np.array_equal(got, want), key
        assert got.flags.c_contiguous and got.flags.owndata, key
    assert state["a"].tolist() == [[-2.5, 3.5, 9.5], [-1.0, 5.0, 11.0]]
    # arrays are copies: changing one does not change another view of the same storage
    state["a"][0, 0] = 1000.0
    assert state["f"][0, 0] == base[4]


@pytest.mark.parametrize(
    ("offset", "size", "stride"),
    [
        (0, [21], [1]),  # longer than the storage
        (17, [2, 3], [1, 1]),  # offset pushes the view out (17 + 1 + 2 = 20)
        (0, [5, 4], [4, 2]),  # strides reach 16 + 6 = 22
        (20, [], []),  # a scalar just past the end
    ],
)
def test_zip_view_out_of_bounds_raises(tmp_path, offset, size, stride):
    body = dict_([("w", tensor("FloatStorage", "0", 20, offset, size, stride))])
    raw = np.arange(20, dtype="<f4").tobytes()
    path = write_zip(tmp_path / "oob.pth", body, {"0": raw})
    with pytest.raises(CheckpointError, match="out of bounds") as info:
        load_pth(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("size", "stride", "offset"),
    [([2, 3], [1], 0), ([-1], [1], 0), ([2], [-1], 1), ([2], [1], -1), ([2.0], [1], 0)],
)
def test_invalid_tensor_arguments_raise(tmp_path, size, stride, offset):
    def num(v):
        return b"G" + struct.pack(">d", v) if isinstance(v, float) else i(v)

    pid = storage_pid("FloatStorage", "0", 4)
    rebuild = call(
        g("torch._utils", "_rebuild_tensor_v2"),
        pid,
        num(offset),
        t(*map(num, size)),
        t(*map(num, stride)),
        FALSE,
        ordered_dict(),
    )
    path = write_zip(tmp_path / "args.pth", dict_([("w", rebuild)]), {"0": bytes(16)})
    with pytest.raises(CheckpointError, match="_rebuild_tensor_v2"):
        load_pth(path)


def test_zip_all_storage_types(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    arrays = {
        "DoubleStorage": np.array([1e300, -2.5, np.pi, 0.0], np.float64),
        "FloatStorage": values,
        "HalfStorage": values.astype(np.float16),
        "LongStorage": np.array([2**62, -1, 0, 5], np.int64),
        "IntStorage": np.array([2**31 - 1, -(2**31), 0, 5], np.int32),
        "ShortStorage": np.array([32767, -32768, 0, 5], np.int16),
        "CharStorage": np.array([127, -128, 0, 5], np.int8),
        "ByteStorage": np.array([255, 0, 1, 5], np.uint8),
        "BoolStorage": np.array([True, False, False, True]),
    }
    items, storages = [], {}
    for key, (name, arr) in enumerate(arrays.items()):
        items.append((name, tensor(name, str(key), 4, 0, [4], [1])))
        storages[str(key)] = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
    bf_key = str(len(arrays))
    items.append(("bf16", tensor("BFloat16Storage", bf_key, 4, 0, [2, 2], [1, 2])))
    storages[bf_key] = bf16_bits(values).astype("<u2").tobytes()
    state = load_state_dict(write_zip(tmp_path / "types.pth", dict_(items), storages))
    for name, arr in arrays.items():
        assert state[name].dtype == arr.dtype and np.array_equal(state[name], arr), name
    assert state["bf16"].dtype == np.float32
    assert np.array_equal(state["bf16"], values.reshape(2, 2).T)


def test_zip_big_endian_byteorder(tmp_path):
    floats = np.array([1.25, -3.5, 1e-20], np.float32)
    longs = np.array([1, -2, 2**40], np.int64)
    body = dict_(
        [
            ("f", tensor("FloatStorage", "0", 3, 0, [3], [1])),
            ("l", tensor("LongStorage", "1", 3, 0, [3], [1])),
            ("b", tensor("BFloat16Storage", "2", 3, 0, [3], [1])),
        ]
    )
    storages = {
        "0": floats.astype(">f4").tobytes(),
        "1": longs.astype(">i8").tobytes(),
        "2": bf16_bits(np.array([1.0, -2.0, 0.5])).astype(">u2").tobytes(),
    }
    state = load_state_dict(write_zip(tmp_path / "big.pth", body, storages, byteorder="big"))
    assert state["f"].dtype == np.float32 and np.array_equal(state["f"], floats)
    assert state["l"].dtype == np.int64 and np.array_equal(state["l"], longs)
    assert np.array_equal(state["b"], np.array([1.0, -2.0, 0.5], np.float32))
    assert state["f"].dtype.isnative
    with pytest.raises(CheckpointError, match="byteorder"):
        load_pth(write_zip(tmp_path / "odd.pth", body, storages, byteorder="middle"))


def test_zip_untyped_storage_with_dtype_and_parameters(tmp_path):
    # newer torch: UntypedStorage + _rebuild_tensor_v3(..., dtype, metadata);
    # nn.Parameter: _rebuild_parameter(tensor, requires_grad, hooks).
    u16 = np.array([1, 65535, 300, 7], "<u2")
    floats = np.array([0.5, 1.5, 2.5, 3.5], "<f4")
    v3 = call(
        g("torch._utils", "_rebuild_tensor_v3"),
        storage_pid(("torch.storage", "UntypedStorage"), "0", 8),
        i(1),
        ints([3]),
        ints([1]),
        FALSE,
        ordered_dict(),
        g("torch", "uint16"),
        NONE,
    )
    v3_f32 = call(
        g("torch._utils", "_rebuild_tensor_v3"),
        storage_pid(("torch", "UntypedStorage"), "1", 16),
        i(0),
        ints([2, 2]),
        ints([2, 1]),
        FALSE,
        ordered_dict(),
        g("torch", "float32"),
    )
    param = call(
        g("torch._utils", "_rebuild_parameter"),
        tensor("FloatStorage", "1", 4, 2, [2], [1]),
        b"\x88",
        ordered_dict(),
    )
    param_state = call(
        g("torch._utils", "_rebuild_parameter_with_state"),
        call(
            g("torch._utils", "_rebuild_tensor"),
            storage_pid("FloatStorage", "1", 4),
            i(0),
            ints([4]),
            ints([1]),
        ),
        FALSE,
        ordered_dict(),
        dict_([]),
    )
    size = call(g("torch", "Size"), ints([3, 4]))
    body = dict_(
        [
            ("u16", v3),
            ("f32", v3_f32),
            ("param", param),
            ("param_state", param_state),
            ("size", size),
        ]
    )
    tree = load_pth(
        write_zip(tmp_path / "v3.pth", body, {"0": u16.tobytes(), "1": floats.tobytes()})
    )
    assert tree["u16"].dtype == np.uint16 and tree["u16"].tolist() == [65535, 300, 7]
    assert tree["f32"].dtype == np.float32 and tree["f32"].tolist() == [[0.5, 1.5], [2.5, 3.5]]
    assert tree["param"].tolist() == [2.5, 3.5]
    assert tree["param_state"].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert tree["size"] == (3, 4)


def test_state_dict_with_metadata_build_and_shared_storage(tmp_path):
    # model.state_dict() is an OrderedDict with a ``_metadata`` attribute (BUILD opcode).
    metadata = dict_([("_metadata", ordered_dict([("", dict_([("version", i(1))]))]))])
    raw = np.arange(6, dtype="<f4")
    body = dict_(
        [
            (
                "model_state_dict",
                ordered_dict(
                    [
                        ("w", tensor("FloatStorage", "0", 6, 0, [2, 3], [3, 1])),
                        ("w_t", tensor("FloatStorage", "0", 6, 0, [3, 2], [1, 3])),
                    ],
                    state=metadata,
                ),
            ),
            ("epoch", i(7)),
        ]
    )
    state = load_state_dict(write_zip(tmp_path / "meta.pth", body, {"0": raw.tobytes()}))
    assert list(state) == ["w", "w_t"]
    assert np.array_equal(state["w"], raw.reshape(2, 3))
    assert np.array_equal(state["w_t"], raw.reshape(2, 3).T)


def test_legacy_float64_bfloat16_and_views(tmp_path):
    doubles = np.array([1e-300, -2.0, np.pi, 4.0, 5.5, -6.25], "<f8")
    bf_values = np.array([1.0, -2.5, 3.140625, 1024.0, -0.0078125], np.float32)
    body = ordered_dict(
        [
            ("d", tensor("DoubleStorage", "100", 6, 1, [2, 2], [1, 2], legacy=True)),
            ("bf", tensor("BFloat16Storage", "200", 5, 0, [5], [1], legacy=True)),
            # a legacy storage view: elements 2..5 of root "100"
            (
                "view",
                tensor("DoubleStorage", "100", 6, 1, [3], [1], legacy=True, view=("101", 2, 4)),
            ),
        ]
    )
    path = write_legacy(
        tmp_path / "legacy.pth",
        dict_([("model_state_dict", body)]),
        [("200", 5, bf16_bits(bf_values).astype("<u2").tobytes()), ("100", 6, doubles.tobytes())],
    )
    state = load_state_dict(path)
    assert list(state) == ["d", "bf", "view"]
    assert state["d"].dtype == np.float64
    assert np.array_equal(
        state["d"], np.array([[doubles[1], doubles[3]], [doubles[2], doubles[4]]])
    )
    assert state["bf"].dtype == np.float32 and np.array_equal(state["bf"], bf_values)
    assert np.array_equal(state["view"], doubles[3:6])
    # a view running past its window is out of bounds
    bad = ordered_dict(
        [("v", tensor("DoubleStorage", "100", 6, 0, [5], [1], legacy=True, view=("101", 2, 4)))]
    )
    path = write_legacy(tmp_path / "legacy_oob.pth", bad, [("100", 6, doubles.tobytes())])
    with pytest.raises(CheckpointError, match="out of bounds"):
        load_pth(path)


def test_legacy_inconsistent_storage_list(tmp_path):
    body = dict_([("w", tensor("FloatStorage", "1", 2, 0, [2], [1], legacy=True))])
    raw = np.ones(2, "<f4").tobytes()
    with pytest.raises(CheckpointError, match="count 3"):
        load_pth(write_legacy(tmp_path / "count.pth", body, [("1", 3, raw + bytes(4))]))
    with pytest.raises(CheckpointError, match="no reference"):
        load_pth(write_legacy(tmp_path / "extra.pth", body, [("1", 2, raw), ("9", 1, raw)]))
    with pytest.raises(CheckpointError, match="data is not in the file"):
        load_pth(write_legacy(tmp_path / "absent.pth", body, []))


# --------------------------------------------------------------------------- #
# load_state_dict's checks.
# --------------------------------------------------------------------------- #


def test_load_state_dict_flat_dict_and_key(tmp_path):
    raw = np.array([1.0, 2.0], "<f4").tobytes()
    flat = dict_([("a", tensor("FloatStorage", "0", 2, 0, [2], [1]))])
    state = load_state_dict(write_zip(tmp_path / "flat.pth", flat, {"0": raw}))
    assert list(state) == ["a"] and state["a"].tolist() == [1.0, 2.0]
    nested = dict_([("weights", flat)])
    path = write_zip(tmp_path / "nested.pth", nested, {"0": raw})
    assert load_state_dict(path, key="weights")["a"].tolist() == [1.0, 2.0]
    with pytest.raises(CheckpointError, match="'model_state_dict'"):
        load_state_dict(path)


def test_load_state_dict_rejects_non_arrays(tmp_path):
    raw = np.array([1.0, 2.0], "<f4").tobytes()
    mixed = dict_([("a", tensor("FloatStorage", "0", 2, 0, [2], [1])), ("step", i(3))])
    path = write_zip(tmp_path / "mixed.pth", dict_([("model_state_dict", mixed)]), {"0": raw})
    with pytest.raises(CheckpointError, match=r"expected a tensor for 'step'.*found int"):
        load_state_dict(path)
    path = write_zip(tmp_path / "list.pth", b"]" + i(1) + b"a", {})
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_state_dict(path)
    path = write_zip(tmp_path / "notdict.pth", dict_([("model_state_dict", s("x"))]), {})
    with pytest.raises(CheckpointError, match="found str"):
        load_state_dict(path)
