"""PIPs as three compiled programs of fixed shapes, for runtimes without pips-jax.

A runtime that tracks points with PIPs needs three pieces, each exported here for one
working resolution ``H x W``, ``N`` points, ``I`` iterations and a batch of ``B``
frames:

* ``encode``: ``(B, H, W, 3)`` uint8 RGB frames (0..255, already resized to the
  working resolution: resizing is the runtime's) -> ``(B, H/stride, W/stride, C)``
  float32 feature maps;
* ``query_features``: one frame's ``(H/stride, W/stride, C)`` feature map and ``(N, 2)``
  points -> ``(N, C)`` float32 point features (the bilinear sample with clamped
  borders the tracker reads a query's feature with);
* ``window``: one window's ``(S, H/stride, W/stride, C)`` feature maps, ``(N, 2)``
  start points on its frame 0 and their ``(N, C)`` features -> ``(S, N, 2)`` positions
  and ``(S, N)`` visibility probabilities (the sigmoid of the model's logits), exactly
  the tracker's window (``Tracker._window_impl``).

Coordinates are ``(x, y)`` model pixels, i.e. pixels of the ``H x W`` working
resolution, with the origin at the centre of the top-left pixel (``x`` along the
width). Chaining windows over a longer video (the re-anchoring rule of
:mod:`pips_jax.tracker`) is the runtime's.

**Parameters are constants of the programs.** The rest of the package passes
parameters into jitted functions as arguments; an export is the one place that closes
over them on purpose, so a runtime needs the program files and nothing else (``encode``
holds the encoder's parameters, ``window`` the rest, ``query_features`` none).

Two formats, written into one folder with an ``export.json`` that describes every
input and output (:func:`describe`):

* ``stablehlo``: ``jax.export`` artefacts (``encode.stablehlo``, ...), reloaded with
  ``jax.export.deserialize(data).call(...)``; lowered for CPU and CUDA unless other
  platforms are asked for (serializing needs ``flatbuffers``, in the ``[export]`` extra);
* ``onnx``: ``encode.onnx``, ... through ``jax2onnx`` (the ``[export]`` extra, Python
  >= 3.11), run with ``onnxruntime``. The encoder is converted with its frames encoded all at once
  rather than one at a time as the tracker does (the same numbers: the converter
  turns the per-frame loop into an ONNX ``Loop`` whose output has no fixed batch size).

How close a runtime comes to the tracker: the StableHLO programs are the tracker's own
computations and give its numbers on the same shapes. ONNX runtimes use other kernels,
whose float32 rounding differs in the last bits; the refinement loop can amplify that
from one iteration to the next (with the shipped weights on a 360x640 scene: 6e-5 px
after one iteration, about 1 px after four, as much as a 1e-6 relative change of the
query features moves the tracker's own answer). ``tests/test_export.py`` holds both
formats to the tracker within 1e-3 px on a small model.

Only PIPs is exported (PIPs++ windows carry three templates per frame and vary in
length; asking for it is an :class:`~pips_jax.errors.InputError`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pips_jax.config import ModelConfig
from pips_jax.errors import InputError
from pips_jax.files import StagedOutputs
from pips_jax.model.families import model_for
from pips_jax.model.pips import Params, Pips
from pips_jax.tracker import check_resolution
from pips_jax.weights import Weights

#: The formats :func:`export_model` writes, with each program file's extension.
FORMATS = {"stablehlo": ".stablehlo", "onnx": ".onnx"}
#: The platforms StableHLO programs can be lowered for, and those they are by default.
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")
DEFAULT_PLATFORMS = ("cpu", "cuda")
#: The ONNX opset the programs are converted to.
ONNX_OPSET = 21
HOW_TO_GET_EXTRA = 'pip install "pips-jax[export]"'
COORDINATES = (
    "(x, y) model pixels: pixels of the H x W working resolution, origin at the centre "
    "of the top-left pixel, x along the width"
)


@dataclasses.dataclass(frozen=True)
class ExportShapes:
    """The fixed shapes of an export.

    Attributes:
        resolution: ``(H, W)`` working resolution in pixels (each a multiple of the
            stride, at least the pyramid's minimum).
        points: ``N``, points per window (a runtime pads fewer points).
        iters: refinement iterations per window.
        batch: ``B``, frames per ``encode`` call.
    """

    resolution: tuple[int, int]
    points: int
    iters: int
    batch: int

    def check(self, config: ModelConfig) -> ExportShapes:
        """These shapes, checked against ``config``.

        Raises:
            InputError: a resolution the model cannot take, or a count below 1.
        """
        for name in ("points", "iters", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"export {name}: expected an integer >= 1, found {value!r}")
        return dataclasses.replace(self, resolution=check_resolution(self.resolution, config))


def check_family(config: Any) -> ModelConfig:
    """The config of an exportable model: PIPs only.

    Raises:
        InputError: PIPs++ (or any other family).
    """
    if getattr(config, "family", None) != "pips":
        label = getattr(config, "label", type(config).__name__)
        raise InputError(
            f"export: expected PIPs weights, found {label} weights; PIPs++ windows (three "
            "templates per frame, lengths that vary) are not exported yet"
        )
    return config


def weights_name(weights: Weights) -> str:
    """The name ``export.json`` gives the weights: their card's, else where they came
    from."""
    return str(weights.card.get("name") or weights.description)


# ---------------------------------------------------------------- the programs
def _exact(fn: Callable[..., Any], compute_dtype: Any) -> Callable[..., Any]:
    """``fn`` traced with full float32 matrix products when the model computes in
    float32, as the tracker runs it (GPUs' default rounds them to TF32)."""
    if jnp.dtype(compute_dtype) != jnp.float32:
        return fn

    def exact(*args: Any) -> Any:
        with jax.default_matmul_precision("highest"):
            return fn(*args)

    return exact


def encode_function(
    model: Pips, params: Params, per_frame: bool = True
) -> Callable[[jax.Array], jax.Array]:
    """``frames -> fmaps`` with ``params`` closed over.

    Args:
        model: the PIPs model.
        params: its parameters (become constants of the traced program).
        per_frame: encode the frames one at a time (the tracker's way, a loop in the
            program) or all at once (no loop, for converters without one); the numbers
            are the same.

    Returns:
        ``f(frames)``: ``(B, H, W, 3)`` uint8 RGB at the working resolution to
        ``(B, H/stride, W/stride, C)`` float32 feature maps.
    """

    def encode(frames: jax.Array) -> jax.Array:
        return model.encode(params, frames, per_frame=per_frame)

    return _exact(encode, model.compute_dtype)


def query_function(model: Pips) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``(fmap, xys) -> feats``: ``(h, w, C)`` one frame's feature map and ``(N, 2)``
    points ``(x, y)`` in model pixels (origin at the centre of the top-left pixel) to
    their ``(N, C)`` features, as the tracker samples a query's feature."""

    def query_features(fmap: jax.Array, xys: jax.Array) -> jax.Array:
        return model.point_features(fmap[None], xys[None])[0]

    return _exact(query_features, model.compute_dtype)


def window_function(
    model: Pips, params: Params, iters: int
) -> Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """``(fmaps, xys, feats) -> (coords, visibility)`` with ``params`` closed over:
    one window as the tracker runs it.

    The function takes ``(S, h, w, C)`` feature maps, ``(N, 2)`` start points ``(x, y)``
    in model pixels on frame 0 (origin at the centre of the top-left pixel) and their
    ``(N, C)`` features, and returns ``(S, N, 2)`` positions in model pixels and
    ``(S, N)`` visibility probabilities.
    """

    def window(fmaps: jax.Array, xys: jax.Array, feats: jax.Array):
        out = model.forward_features(params, fmaps[None], xys[None], iters, feat_init=feats[None])
        return out.coords[-1, 0], jax.nn.sigmoid(out.vis_logits[0])

    return _exact(window, model.compute_dtype)


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One input or output of an exported program."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    description: str

    def spec(self) -> jax.ShapeDtypeStruct:
        return jax.ShapeDtypeStruct(self.shape, jnp.dtype(self.dtype))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "description": self.description,
        }


@dataclasses.dataclass(frozen=True)
class Program:
    """One exported piece: its traced function, inputs and outputs."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    description: str


def programs(
    model: Pips, params: Params, shapes: ExportShapes, per_frame: bool = True
) -> list[Program]:
    """The three pieces (``encode``, ``query_features``, ``window``) for ``shapes``
    (checked against the model), their functions closing over ``params``."""
    cfg = check_family(model.config)
    shapes = shapes.check(cfg)
    h, w = shapes.resolution
    n, b, s, c = shapes.points, shapes.batch, cfg.S, cfg.latent_dim
    fh, fw = h // cfg.stride, w // cfg.stride
    points = Tensor("xys", (n, 2), "float32", f"points {COORDINATES}")
    feats = Tensor("feats", (n, c), "float32", "the points' features (query_features' output)")
    return [
        Program(
            "encode",
            encode_function(model, params, per_frame),
            (Tensor("frames", (b, h, w, 3), "uint8", "RGB frames 0..255 at the resolution"),),
            (Tensor("fmaps", (b, fh, fw, c), "float32", "one feature map per frame"),),
            "frames to feature maps",
        ),
        Program(
            "query_features",
            query_function(model),
            (Tensor("fmap", (fh, fw, c), "float32", "the query frame's feature map"), points),
            (Tensor("feats", (n, c), "float32", "bilinear samples, clamped at the borders"),),
            "the features of points on one frame (what a window tracks)",
        ),
        Program(
            "window",
            window_function(model, params, shapes.iters),
            (
                Tensor("fmaps", (s, fh, fw, c), "float32", "the window's S feature maps"),
                dataclasses.replace(points, description=f"start points on frame 0, {COORDINATES}"),
                feats,
            ),
            (
                Tensor("coords", (s, n, 2), "float32", f"positions on every frame, {COORDINATES}"),
                Tensor("visibility", (s, n), "float32", "visibility probabilities (sigmoid)"),
            ),
            f"one window of S={s} frames, {shapes.iters} refinement iterations",
        ),
    ]


# ------------------------------------------------------------------ the formats
def check_platforms(platforms: Sequence[str]) -> tuple[str, ...]:
    """StableHLO platforms, checked against :data:`PLATFORMS`.

    Raises:
        InputError: none, or one ``jax.export`` does not lower for.
    """
    platforms = tuple(platforms)
    unknown = [p for p in platforms if p not in PLATFORMS]
    if unknown or not platforms:
        raise InputError(
            f"export platforms: expected some of {', '.join(PLATFORMS)}, found "
            f"{', '.join(platforms) or 'none'}"
        )
    return platforms


def stablehlo_bytes(program: Program, platforms: Sequence[str] = DEFAULT_PLATFORMS) -> bytes:
    """``program`` serialized by ``jax.export`` for ``platforms``."""
    check_converter("stablehlo")
    exported = jax.export.export(jax.jit(program.fn), platforms=tuple(platforms))(
        *(t.spec() for t in program.inputs)
    )
    return bytes(exported.serialize())


def onnx_available() -> bool:
    """Whether the ONNX converter (the ``[export]`` extra) imports."""
    try:
        import jax2onnx  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def check_converter(format: str) -> None:
    """Raises :class:`InputError` naming the ``[export]`` extra when what ``format``
    needs is missing: ``jax.export``'s serializer (flatbuffers) or the ONNX converter."""
    if format == "onnx" and not onnx_available():
        raise InputError(
            f"export --format onnx: expected the ONNX converter jax2onnx and onnx, found "
            f"them missing; install them with {HOW_TO_GET_EXTRA} (Python >= 3.11)"
        )
    if format == "stablehlo":
        try:
            import flatbuffers  # noqa: F401
        except ImportError:
            raise InputError(
                "export --format stablehlo: expected flatbuffers (jax.export's serializer), "
                f"found it missing; install it with {HOW_TO_GET_EXTRA}"
            ) from None


def onnx_bytes(program: Program) -> bytes:
    """``program`` converted to an ONNX model (``jax2onnx``), inputs and outputs named
    as its :class:`Tensor` s."""
    check_converter("onnx")
    from jax2onnx import to_onnx

    proto = to_onnx(
        program.fn,
        [t.spec() for t in program.inputs],
        model_name=program.name,
        opset=ONNX_OPSET,
        input_names=[t.name for t in program.inputs],
        output_names=[t.name for t in program.outputs],
    )
    drop_unused_initializers(proto.graph)
    return proto.SerializeToString()


def drop_unused_initializers(graph: Any) -> set[str]:
    """Removes, in place, the constants (initializers) of an ONNX ``graph`` and of the
    loop bodies inside it that no node reads (jax2onnx leaves some in the loops it
    writes; onnxruntime would drop each with a warning line when loading).

    Returns:
        The names the graph's nodes read, its nested graphs' included (a loop body may
        read a constant of the graph around it, which is then kept).
    """
    import onnx

    used: set[str] = set()
    for node in graph.node:
        used.update(node.input)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                used |= drop_unused_initializers(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    used |= drop_unused_initializers(sub)
    keep = used | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in keep]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return used


# --------------------------------------------------------------------- export
def describe(
    pieces: Sequence[Program],
    format: str,
    config: ModelConfig,
    shapes: ExportShapes,
    weights: str,
    precision: str,
    platforms: Sequence[str] | None,
) -> dict[str, Any]:
    """The ``export.json`` of an export: every piece's file, inputs and outputs, and
    what the runtime must know (coordinates, window length, resolution, weights)."""
    return {
        "pips_jax_version": importlib.metadata.version("pips-jax"),
        "format": format,
        "family": config.family,
        "weights": weights,
        "model": dataclasses.asdict(config),
        "precision": precision,
        "resolution": list(shapes.resolution),
        "stride": config.stride,
        "window": config.S,
        "iters": shapes.iters,
        "points": shapes.points,
        "batch": shapes.batch,
        "coordinates": COORDINATES,
        "frames": "uint8 RGB 0..255, resized to the resolution (H, W) before encode",
        "parameters": "constants of the programs (no parameter file)",
        **({"platforms": list(platforms)} if platforms is not None else {}),
        "pieces": {
            p.name: {
                "file": f"{p.name}{FORMATS[format]}",
                "description": p.description,
                "inputs": [t.to_json() for t in p.inputs],
                "outputs": [t.to_json() for t in p.outputs],
            }
            for p in pieces
        },
    }


def export_model(
    out: str | Path,
    params: Params,
    config: ModelConfig,
    shapes: ExportShapes,
    format: str = "stablehlo",
    weights: str = "",
    precision: str = "float32",
    platforms: Sequence[str] | None = None,
) -> list[Path]:
    """Writes the three pieces and ``export.json`` into the folder ``out``.

    Every file is written under a temporary name and all are put in place together at
    the end (:class:`~pips_jax.files.StagedOutputs`): a failure leaves ``out`` as it was.

    Args:
        out: the output folder (created).
        params, config: PIPs weights.
        shapes: the fixed shapes.
        format: ``"stablehlo"`` or ``"onnx"``.
        weights: the weights' name, for ``export.json``.
        precision: ``"float32"`` or ``"bfloat16"`` (StableHLO only).
        platforms: StableHLO only: the platforms to lower for (default
            :data:`DEFAULT_PLATFORMS`).

    Returns:
        The written paths, ``export.json`` last.

    Raises:
        InputError: an unknown format, PIPs++ weights, a resolution the model cannot
            take, ONNX without the ``[export]`` extra, or ONNX in bfloat16.
    """
    if format not in FORMATS:
        raise InputError(f"export format: expected one of {', '.join(FORMATS)}, found {format!r}")
    check_family(config)
    shapes = shapes.check(config)
    check_converter(format)
    if format == "onnx":
        if precision != "float32":
            raise InputError(
                f"export --format onnx: expected --precision float32, found {precision}; "
                "bfloat16 programs are exported as stablehlo"
            )
        if platforms is not None:
            raise InputError("export --format onnx: platforms are a stablehlo setting")
    else:
        platforms = check_platforms(platforms or DEFAULT_PLATFORMS)
    model = model_for(config, compute_dtype=precision)
    pieces = programs(model, params, shapes, per_frame=format == "stablehlo")
    meta = describe(pieces, format, config, shapes, weights, precision, platforms)
    with StagedOutputs(out) as staged:
        for piece in pieces:
            data = onnx_bytes(piece) if format == "onnx" else stablehlo_bytes(piece, platforms)
            staged.path(meta["pieces"][piece.name]["file"]).write_bytes(data)
        staged.path("export.json").write_text(json.dumps(meta, indent=1) + "\n")
    return staged.written
