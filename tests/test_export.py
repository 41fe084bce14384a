"""`pips-jax export`: the exported programs, reloaded by ``jax.export`` and run by
onnxruntime, give the tracker's own numbers; the command's export.json describes them;
bad input fails in one line and writes nothing."""

import json
import sys

import jax
import numpy as np
import pytest

from pips_jax import export
from pips_jax.checkpoint.store import save_params
from pips_jax.cli import export as cli_export
from pips_jax.cli import main
from pips_jax.config import Pips2Config
from pips_jax.errors import InputError
from pips_jax.tracker import Tracker
from small_model import SMALL, damped_params

H, W = 32, 48
ITERS = 2
XYS = np.array([[5.0, 7.5], [40.25, 20.0], [0.0, 31.0], [23.0, 16.0]], np.float32)
SHAPES = export.ExportShapes((H, W), points=len(XYS), iters=ITERS, batch=8)
PIECES = ("encode", "query_features", "window")

# jax2onnx 0.17.1's own int(dim) on JAX's dimensions.
pytestmark = pytest.mark.filterwarnings("ignore:The delegation of int:DeprecationWarning")
needs_onnx = pytest.mark.skipif(
    not export.onnx_available(),
    reason='the ONNX converter is not installed (pip install "pips-jax[export]", Python >= 3.11)',
)


@pytest.fixture(scope="module")
def params():
    return damped_params(SMALL)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(H + 20, W + 20, 3), dtype=np.uint8)
    # A textured scene panning 1.5 px/frame right and 1 px/frame down.
    return np.stack([base[t // 2 : t // 2 + H, (3 * t) // 2 : (3 * t) // 2 + W] for t in range(8)])


@pytest.fixture(scope="module")
def reference(params, frames):
    """The tracker's own compiled pieces on the frames and XYS, and its whole-video
    answer (8 frames: one window, at the input's own resolution, so model pixels are
    input pixels)."""
    tracker = Tracker(params, SMALL, resolution=(H, W), iters=ITERS)
    store = tracker.encode_video(frames, len(frames))
    fmaps = store.data.copy()
    store.close()
    feats = np.asarray(tracker._sample(fmaps[0], XYS))
    coords, vis = tracker._window(tracker.params, fmaps, XYS, feats)
    result = tracker.track(frames, queries=np.concatenate([np.zeros((len(XYS), 1)), XYS], 1))
    return {
        "fmaps": fmaps,
        "feats": feats,
        "coords": np.asarray(coords),
        "vis": np.asarray(vis),
        "tracks": result.tracks,
        "confidence": result.confidence,
    }


def check_against_tracker(run, frames, reference):
    """``run(piece, *inputs)`` (one exported piece) gives the tracker's numbers, piece
    by piece and chained as a runtime would track 8 frames."""
    fmaps = run("encode", frames)
    np.testing.assert_allclose(fmaps, reference["fmaps"], atol=1e-4)
    feats = run("query_features", reference["fmaps"][0], XYS)
    np.testing.assert_allclose(feats, reference["feats"], atol=1e-4)
    coords, vis = run("window", reference["fmaps"], XYS, reference["feats"])
    assert coords.shape == (SMALL.S, len(XYS), 2) and vis.shape == (SMALL.S, len(XYS))
    np.testing.assert_allclose(coords, reference["coords"], atol=1e-3)
    np.testing.assert_allclose(vis, reference["vis"], atol=1e-4)
    # Exported pieces alone, chained: the tracker's tracks of the 8 frames.
    coords, vis = run("window", fmaps, XYS, run("query_features", fmaps[0], XYS))
    np.testing.assert_allclose(coords.transpose(1, 0, 2), reference["tracks"], atol=1e-3)
    np.testing.assert_allclose(vis.T, reference["confidence"], atol=1e-4)


def stablehlo_runner(folder):
    meta = json.loads((folder / "export.json").read_text())
    loaded = {
        name: jax.export.deserialize((folder / meta["pieces"][name]["file"]).read_bytes())
        for name in PIECES
    }

    def run(name, *inputs):
        out = loaded[name].call(*inputs)
        return tuple(np.asarray(o) for o in out) if isinstance(out, tuple) else np.asarray(out)

    return run


def onnx_runner(folder):
    import onnxruntime as ort

    meta = json.loads((folder / "export.json").read_text())
    sessions = {
        name: ort.InferenceSession(str(folder / meta["pieces"][name]["file"])) for name in PIECES
    }

    def run(name, *inputs):
        session = sessions[name]
        names = [i.name for i in session.get_inputs()]
        assert names == [t["name"] for t in meta["pieces"][name]["inputs"]]
        out = session.run(None, dict(zip(names, inputs, strict=True)))
        return tuple(out) if len(out) > 1 else out[0]

    return run


def test_stablehlo_pieces_give_the_trackers_numbers(tmp_path, params, frames, reference):
    written = export.export_model(tmp_path / "out", params, SMALL, SHAPES, "stablehlo")
    assert [p.name for p in written] == [
        "encode.stablehlo",
        "query_features.stablehlo",
        "window.stablehlo",
        "export.json",
    ]
    check_against_tracker(stablehlo_runner(tmp_path / "out"), frames, reference)
    exported = jax.export.deserialize((tmp_path / "out" / "window.stablehlo").read_bytes())
    assert exported.platforms == export.DEFAULT_PLATFORMS


@needs_onnx
def test_onnx_pieces_give_the_trackers_numbers(tmp_path, params, frames, reference, capfd):
    export.export_model(tmp_path / "out", params, SMALL, SHAPES, "onnx")
    run = onnx_runner(tmp_path / "out")
    # onnxruntime finds no unused constant to drop (it warns on stderr for each)
    assert "Removing initializer" not in capfd.readouterr().err
    check_against_tracker(run, frames, reference)


@needs_onnx
def test_unused_onnx_constants_are_dropped_where_no_node_reads_them():
    import onnx
    from onnx import helper

    c = lambda name: helper.make_tensor(name, onnx.TensorProto.FLOAT, [1], [1.0])  # noqa: E731
    body = helper.make_graph(
        [helper.make_node("Add", ["x", "outer"], ["y"])],  # reads a constant of the outer graph
        "body", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        initializer=[c("x"), c("body_unused")],
    )  # fmt: skip
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["out"], then_branch=body, else_branch=body)],
        "main", [helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1])],
        initializer=[c("outer"), c("unused")],
    )  # fmt: skip
    export.drop_unused_initializers(graph)
    assert [i.name for i in graph.initializer] == ["outer"]
    node = graph.node[0]
    assert all([i.name for i in a.g.initializer] == ["x"] for a in node.attribute)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, params):
    return save_params(tmp_path_factory.mktemp("weights") / "small.safetensors", params, SMALL)


def _export(checkpoint, out, *extra):
    return main(
        [
            "export",
            str(out),
            "--checkpoint",
            str(checkpoint),
            "--resolution",
            f"{H}x{W}",
            "--points",
            str(len(XYS)),
            "--iters",
            str(ITERS),
            *extra,
        ]
    )


@pytest.mark.parametrize("format", ["stablehlo", pytest.param("onnx", marks=needs_onnx)], ids=str)
def test_cli_writes_described_reloadable_programs(
    tmp_path, checkpoint, frames, reference, capsys, format
):
    out = tmp_path / "out"
    extra = ("--platforms", "cpu") if format == "stablehlo" else ()
    assert _export(checkpoint, out, "--format", format, "--quiet", *extra) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.startswith(
        f"exported PIPs as {format} at 32x48 (HxW), 4 points, 2 iterations, 8 frames per encode ("
    )
    ext = export.FORMATS[format]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["export.json", *(f"{name}{ext}" for name in PIECES)]
    )
    meta = json.loads((out / "export.json").read_text())
    from pips_jax import __version__

    assert meta["pips_jax_version"] == __version__
    assert (meta["format"], meta["family"], meta["weights"]) == (format, "pips", str(checkpoint))
    assert (meta["resolution"], meta["stride"], meta["window"]) == ([H, W], 4, 8)
    assert (meta["iters"], meta["points"], meta["batch"]) == (ITERS, 4, 8)
    assert meta["precision"] == "float32" and meta["model"]["latent_dim"] == SMALL.latent_dim
    assert "origin at the centre of the top-left pixel" in meta["coordinates"]
    assert meta.get("platforms") == (["cpu"] if format == "stablehlo" else None)
    pieces = meta["pieces"]
    c, fh, fw = SMALL.latent_dim, H // 4, W // 4
    shapes = {
        name: (
            [(t["name"], t["shape"], t["dtype"]) for t in piece["inputs"]],
            [(t["name"], t["shape"], t["dtype"]) for t in piece["outputs"]],
        )
        for name, piece in pieces.items()
    }
    assert shapes == {
        "encode": (
            [("frames", [8, H, W, 3], "uint8")],
            [("fmaps", [8, fh, fw, c], "float32")],
        ),
        "query_features": (
            [("fmap", [fh, fw, c], "float32"), ("xys", [4, 2], "float32")],
            [("feats", [4, c], "float32")],
        ),
        "window": (
            [
                ("fmaps", [8, fh, fw, c], "float32"),
                ("xys", [4, 2], "float32"),
                ("feats", [4, c], "float32"),
            ],
            [("coords", [8, 4, 2], "float32"), ("visibility", [8, 4], "float32")],
        ),
    }
    runner = stablehlo_runner if format == "stablehlo" else onnx_runner
    check_against_tracker(runner(out), frames, reference)


def test_resolution_the_model_cannot_take_fails_in_one_line(tmp_path, checkpoint, capsys):
    assert _export(checkpoint, tmp_path / "out", "--resolution", "30x48") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "pips-jax export: error: resolution 30x48: expected each side a multiple of the "
        "stride 4 and at least 8 (stride x 2^(pyramid levels - 1))"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "format, missing, message",
    [
        (
            "onnx",
            "jax2onnx",
            "export --format onnx: expected the ONNX converter jax2onnx and onnx, found them "
            'missing; install them with pip install "pips-jax[export]" (Python >= 3.11)',
        ),
        (
            "stablehlo",
            "flatbuffers",
            "export --format stablehlo: expected flatbuffers (jax.export's serializer), found "
            'it missing; install it with pip install "pips-jax[export]"',
        ),
    ],
)
def test_a_missing_extra_is_named(
    tmp_path, checkpoint, capsys, monkeypatch, format, missing, message
):
    monkeypatch.setitem(sys.modules, missing, None)  # importing it raises ImportError
    assert _export(checkpoint, tmp_path / "out", "--format", format) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"pips-jax export: error: {message}"]
    assert not (tmp_path / "out").exists()


def test_failure_writes_nothing_and_keeps_an_earlier_export(tmp_path, params, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "export.json").write_text("earlier\n")
    calls = []

    def fail_on_the_second(program, platforms):
        calls.append(program.name)
        if len(calls) == 2:
            raise RuntimeError("lowering failed")
        return b"program"

    monkeypatch.setattr(export, "stablehlo_bytes", fail_on_the_second)
    with pytest.raises(RuntimeError, match="lowering failed"):
        export.export_model(out, params, SMALL, SHAPES, "stablehlo")
    assert [p.name for p in out.iterdir()] == ["export.json"]
    assert (out / "export.json").read_text() == "earlier\n"


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda p: export.export_model("x", {}, Pips2Config(), SHAPES),
            "export: expected PIPs weights, found PIPs++ weights",
        ),
        (
            lambda p: export.export_model("x", p, SMALL, SHAPES, "tflite"),
            "export format: expected one of stablehlo, onnx, found 'tflite'",
        ),
        (
            lambda p: export.export_model("x", p, SMALL, export.ExportShapes((H, W), 0, ITERS, 8)),
            "export points: expected an integer >= 1, found 0",
        ),
        (
            lambda p: export.export_model("x", p, SMALL, SHAPES, platforms=("gpu",)),
            "export platforms: expected some of cpu, cuda, rocm, tpu, found gpu",
        ),
    ],
    ids=["pips2", "format", "points", "platform"],
)
def test_bad_requests_are_input_errors(tmp_path, monkeypatch, params, call, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as e:
        call(params)
    assert str(e.value).startswith(message)
    assert not (tmp_path / "x").exists()


def test_the_parser_names_what_the_library_defines():
    # The parser is built without importing pips_jax.export (and so JAX).
    assert cli_export.FORMATS == tuple(export.FORMATS)
    assert cli_export.PLATFORMS_HELP == ",".join(export.DEFAULT_PLATFORMS)
    assert cli_export.HOW_TO_GET_EXTRA == export.HOW_TO_GET_EXTRA
