"""Speed and memory of the PIPs and PIPs++ forward passes and of whole-video tracking.

Every measurement runs in a fresh subprocess so that its peak memory (host RSS on CPU,
``peak_bytes_in_use`` of the device on GPU) belongs to that configuration alone.
Timing uses random parameters: the forward's speed does not depend on the weights'
values. Whole-video tracking does, through re-anchoring (a window advances to the
latest frame whose visibility is confident); its benchmark sets the visibility head's
bias high so every point is confidently visible and each window advances S - 1 frames,
as trained weights do on points that stay in view (random weights would re-anchor after
one or two frames and measure a worst case no trained model produces).

The analytic FLOP count (:func:`forward_flops`) counts a multiply-add as 2 FLOP:
convolutions ``2 * H_out * W_out * k * k * C_in * C_out``, dense layers
``2 * rows * in * out``, correlation windows ``2 * (2r+2)^2 * C`` per point, frame and
level, per iteration (for PIPs++: per template too), and PIPs++'s 1-D convolutions
``2 * S * k * C_in * C_out`` per point.

PIPs++ (``model="pips2"``) has no visibility head: its whole-video benchmark chains
windows as the original does, whatever the weights, so random weights measure it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from pips_jax.config import ModelConfig, Pips2Config
from pips_jax.runtime import free_port

#: The families a benchmark case can run.
MODELS = ("pips", "pips2")


def model_config(model: str, frames: int = 8) -> ModelConfig | Pips2Config:
    """The reference model of a family: PIPs (its 8-frame windows) or PIPs++ with
    windows of ``frames`` frames."""
    if model == "pips":
        if frames != 8:
            raise ValueError(f"PIPs runs 8-frame windows, found frames={frames}")
        return ModelConfig()
    if model == "pips2":
        return Pips2Config(S=frames)
    raise ValueError(f"model: expected one of {', '.join(MODELS)}, found {model!r}")


# ------------------------------------------------------------------ FLOP count
def encoder_flops(config: ModelConfig, height: int, width: int) -> float:
    """FLOP of encoding one ``height x width`` frame."""

    def conv(h: int, w: int, k: int, cin: int, cout: int) -> float:
        return 2.0 * h * w * k * k * cin * cout

    def out(n: int, k: int, s: int) -> int:
        return (n + 2 * (k // 2) - k) // s + 1

    h, w = out(height, 7, 2), out(width, 7, 2)
    total = conv(h, w, 7, 3, config.encoder_stem_dim)
    cin = config.encoder_stem_dim
    for i, dim in enumerate(config.encoder_dims):
        s = 1 if i == 0 else 2
        h2, w2 = out(h, 3, s), out(w, 3, s)
        total += conv(h2, w2, 3, cin, dim) + 3 * conv(h2, w2, 3, dim, dim)
        if s != 1 or cin != dim:
            total += conv(h2, w2, 1, cin, dim)
        h, w, cin = h2, w2, dim
    hf, wf = height // config.stride, width // config.stride
    total += conv(hf, wf, 3, sum(config.encoder_dims), 2 * config.latent_dim)
    total += conv(hf, wf, 1, 2 * config.latent_dim, config.latent_dim)
    return total


def iteration_flops(config: ModelConfig, num_points: int) -> float:
    """FLOP of one refinement iteration for ``num_points`` points (batch 1)."""
    s, d, e = config.S, config.mixer_dim, config.mixer_expansion
    tokens = num_points * s
    mixer = 2.0 * tokens * config.mixer_input_dim * d
    mixer += config.mixer_depth * (
        2 * 2.0 * num_points * d * s * s * e + 2 * 2.0 * tokens * d * d * e
    )
    mixer += 2.0 * num_points * d * s * (config.latent_dim + 2)
    updater = 2.0 * tokens * config.latent_dim**2
    corr = 2.0 * tokens * config.corr_levels * (2 * config.corr_radius + 2) ** 2 * config.latent_dim
    return mixer + updater + corr


def pips2_iteration_flops(config: Pips2Config, num_points: int) -> float:
    """FLOP of one PIPs++ refinement iteration for ``num_points`` points over S frames
    (batch 1): three templates' correlation windows and the ``delta_block``."""
    rows = num_points * config.S
    k = config.delta_kernel
    net = 2.0 * rows * k * config.delta_input_dim * config.delta_dim
    for c_in, c_out in config.block_widths():
        net += 2.0 * rows * k * (c_in * c_out + c_out * c_out)
    net += 2.0 * rows * config.block_widths()[-1][1] * 2
    corr = 2.0 * rows * config.corr_levels * (2 * config.corr_radius + 2) ** 2 * config.latent_dim
    return net + config.templates * corr


def forward_flops(
    config: ModelConfig | Pips2Config, num_points: int, height: int, width: int, iters: int
) -> float:
    """FLOP of one forward: S frames encoded, ``iters`` refinement iterations."""
    step = iteration_flops if config.family == "pips" else pips2_iteration_flops
    return config.S * encoder_flops(config, height, width) + iters * step(config, num_points)


# ----------------------------------------------------------------- machine info
def machine_info() -> dict[str, Any]:
    import jax

    dev = jax.devices()[0]
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "num_devices": jax.device_count(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "python": platform.python_version(),
    }


def _peak_memory_bytes() -> int:
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        stats = dev.memory_stats() or {}
        return int(stats.get("peak_bytes_in_use", 0))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


# ------------------------------------------------------------ single measurement
@dataclasses.dataclass(frozen=True)
class ForwardCase:
    """One forward configuration: batch 1, ``frames`` frames of ``height x width``, N
    points, of the family ``model`` (PIPs runs its 8 frames; PIPs++ any window)."""

    model: str = "pips"
    frames: int = 8
    num_points: int = 256
    height: int = 360
    width: int = 640
    iters: int = 6
    runs: int = 5
    #: "float32" (full float32 products: exact, what ``--precision float32`` runs),
    #: "default" (float32 with XLA's default matrix-product precision, which rounds
    #: inputs on GPUs and TPUs) or "bfloat16".
    precision: str = "float32"


#: The :attr:`ForwardCase.precision` values.
FORWARD_PRECISIONS = ("float32", "default", "bfloat16")


def _compiled_forward(model, params, frames, xys, iters: int, exact: bool):
    import contextlib

    import jax

    forward = jax.jit(model.forward, static_argnames="iters")
    with jax.default_matmul_precision("highest") if exact else contextlib.nullcontext():
        return forward.lower(params, frames, xys, iters=iters).compile()


def measure_forward(case: ForwardCase, config: ModelConfig | None = None) -> dict[str, Any]:
    """Compile time, steady-state time (min/median of ``runs`` after a warm-up), memory;
    for a precision other than ``"float32"``, also how far its tracks are from the
    ``"float32"`` ones (pixels, max and mean over points and frames)."""
    import jax
    import jax.numpy as jnp

    from pips_jax.model.families import model_for

    if case.precision not in FORWARD_PRECISIONS:
        raise ValueError(
            f"precision: expected one of {FORWARD_PRECISIONS}, found {case.precision!r}"
        )
    config = config or model_config(case.model, case.frames)
    model = model_for(
        config, compute_dtype=jnp.bfloat16 if case.precision == "bfloat16" else jnp.float32
    )
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    frames = jnp.asarray(
        rng.integers(0, 256, (1, config.S, case.height, case.width, 3), dtype=np.uint8)
    )
    xys = rng.uniform([0, 0], [case.width - 1, case.height - 1], (1, case.num_points, 2))
    xys = jnp.asarray(xys.astype(np.float32))
    t0 = time.perf_counter()
    compiled = _compiled_forward(
        model, params, frames, xys, case.iters, exact=case.precision == "float32"
    )
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(params, frames, xys))  # warm-up
    deviation = {}
    if case.precision != "float32":
        exact = _compiled_forward(model_for(config), params, frames, xys, case.iters, exact=True)
        gap = np.linalg.norm(
            np.asarray(out.coords[-1], np.float64)
            - np.asarray(exact(params, frames, xys).coords[-1], np.float64),
            axis=-1,
        )
        deviation = {"deviation_px_max": float(gap.max()), "deviation_px_mean": float(gap.mean())}
    times = []
    for _ in range(case.runs):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(params, frames, xys))
        times.append(time.perf_counter() - t0)
    flops = forward_flops(config, case.num_points, case.height, case.width, case.iters)
    t_min = min(times)
    return {
        **dataclasses.asdict(case),
        "compile_s": compile_s,
        "forward_s_min": t_min,
        "forward_s_median": float(np.median(times)),
        "forward_s_all": times,
        "peak_memory_bytes": _peak_memory_bytes(),
        "flops": flops,
        "gflops_per_s": flops / t_min / 1e9,
        "points_frames_per_s": case.num_points * config.S / t_min,
        **deviation,
    }


@dataclasses.dataclass(frozen=True)
class VideoCase:
    """Whole-video tracking: a T-frame video, N points queried on frame 0, by the
    family ``model`` (PIPs++ in windows of ``window`` frames); ``stream``: PIPs
    forward through :meth:`~pips_jax.tracker.Tracker.stream`, the frames made one by
    one as they are pushed (never a whole video in memory), reporting the latency."""

    model: str = "pips"
    window: int = 8
    num_frames: int = 100
    num_points: int = 1024
    height: int = 360
    width: int = 640
    iters: int = 6
    max_points_per_batch: int = 1024
    stream: bool = False


def _moving_frames(case: VideoCase, count: int) -> Any:
    """``count`` ``(H, W, 3)`` uint8 frames made one at a time: a random texture
    panned one pixel a frame (a generator, so a long stream is never in memory)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (case.height, case.width + 64, 3), dtype=np.uint8)
    for t in range(count):
        shift = t % 128 if t % 128 < 64 else 127 - t % 128  # back and forth
        yield base[:, shift : shift + case.width]


def measure_video(case: VideoCase, config: ModelConfig | None = None) -> dict[str, Any]:
    """Seconds, frames/s and points x frames / s of :class:`~pips_jax.tracker.Tracker`."""
    import jax

    from pips_jax.model.families import model_for
    from pips_jax.tracker import Tracker, TrackStream

    config = config or model_config(case.model, 8 if case.model == "pips" else case.window)
    params = model_for(config).init(jax.random.key(0))
    if case.model == "pips":
        # Every point confidently visible: windows advance S - 1 frames (see module doc).
        vis = dict(params["vis_predictor"])
        vis["bias"] = jax.numpy.full_like(vis["bias"], 20.0)
        params = {**params, "vis_predictor": vis}
    rng = np.random.default_rng(0)
    q = np.zeros((case.num_points, 3), np.float32)
    q[:, 1:] = rng.uniform([0, 0], [case.width - 1, case.height - 1], (case.num_points, 2))
    tracker = Tracker(
        params,
        config,
        resolution=(case.height, case.width),
        iters=case.iters,
        max_points_per_batch=case.max_points_per_batch,
        window=None if case.model == "pips" else case.window,
    )
    # Warm-up compiles every shape on a short clip (same chunk sizes and resolution;
    # for PIPs++ two windows, the second shifted back: the window length of the run).
    warm = config.S + 2 if case.model == "pips" else min(case.num_frames, case.window + 2)
    warm_q = q[: min(len(q), case.max_points_per_batch)]
    extra: dict[str, Any] = {}
    if case.stream:
        if case.model != "pips":
            raise ValueError("stream: PIPs only")
        list(tracker.stream(_moving_frames(case, warm), warm_q))
        t0 = time.perf_counter()
        latency = held = 0
        live = TrackStream(tracker, (case.height, case.width), q)
        for pushed, frame in enumerate(_moving_frames(case, case.num_frames)):
            for final in live.push(frame):
                latency = max(latency, pushed - final.t)
            held = max(held, live.held_frames)
        live.close()
        seconds = time.perf_counter() - t0
        extra = {"latency_frames": latency, "max_held_frames": held}
    else:
        video = np.stack(list(_moving_frames(case, case.num_frames)))
        tracker.track(video[:warm], queries=warm_q)
        t0 = time.perf_counter()
        tracker.track(video, queries=q)
        seconds = time.perf_counter() - t0
    return {
        **dataclasses.asdict(case),
        "seconds": seconds,
        "frames_per_s": case.num_frames / seconds,
        "points_frames_per_s": case.num_points * case.num_frames / seconds,
        "peak_memory_bytes": _peak_memory_bytes(),
        **extra,
    }


@dataclasses.dataclass(frozen=True)
class ScalingCase:
    """Tracking (``task="track"``: a ``num_frames``-frame ``height x width`` video, N
    points on frame 0) or training (``task="train"``: the shipped small model's size,
    batch ``batch_size`` of 128x128 crops) on ``devices`` devices in each of
    ``processes`` processes (joined on 127.0.0.1). On CPU the devices are forced
    (``--xla_force_host_platform_device_count``) and share the machine's cores."""

    task: str = "track"
    devices: int = 1
    processes: int = 1
    num_frames: int = 24
    num_points: int = 512
    height: int = 256
    width: int = 256
    iters: int = 6
    batch_size: int = 4
    train_steps: int = 6


def measure_scaling(case: ScalingCase, out_dir: str | None = None) -> dict[str, Any]:
    """Points x frames / s of the tracker (after a warm-up that compiles every shape),
    or optimizer steps / s of training (over the logged steps after the first, which
    compiles), on every device of this job (the first ``case.devices`` of one process)."""
    import jax

    from pips_jax import runtime

    if case.task == "train":
        return {**dataclasses.asdict(case), **_train_speed(case, out_dir)}
    from pips_jax.model.pips import Pips
    from pips_jax.tracker import Tracker

    config = ModelConfig()
    params = Pips(config).init(jax.random.key(0))
    vis = dict(params["vis_predictor"])  # every point visible: see the module doc
    vis["bias"] = jax.numpy.full_like(vis["bias"], 20.0)
    params = {**params, "vis_predictor": vis}
    if case.processes > 1:
        mesh = runtime.global_mesh("points")
    else:
        mesh = jax.sharding.Mesh(np.asarray(jax.devices()[: case.devices]), ("points",))
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (case.num_frames, case.height, case.width, 3), dtype=np.uint8)
    q = np.zeros((case.num_points, 3), np.float32)
    q[:, 1:] = rng.uniform([0, 0], [case.width - 1, case.height - 1], (case.num_points, 2))
    tracker = Tracker(
        params, config, resolution=(case.height, case.width), iters=case.iters, mesh=mesh
    )
    tracker.track(video[: config.S + 2], queries=q)  # warm-up: every shape compiles
    t0 = time.perf_counter()
    tracker.track(video, queries=q)
    seconds = time.perf_counter() - t0
    return {
        **dataclasses.asdict(case),
        "device_count": tracker.device_count,
        "seconds": seconds,
        "points_frames_per_s": case.num_points * case.num_frames / seconds,
    }


def _train_speed(case: ScalingCase, out_dir: str | None) -> dict[str, Any]:
    import jax

    from pips_jax.training import TrainConfig, train
    from pips_jax.training.log import read_records

    small = ModelConfig(
        latent_dim=64, encoder_dims=(32, 48, 64, 64), encoder_stem_dim=32, mixer_dim=256,
        mixer_depth=6,
    )  # fmt: skip
    config = TrainConfig(
        model=small,
        batch_size=case.batch_size,
        num_points=64,
        crop=(128, 128),
        num_steps=case.train_steps,
        eval_every=0,
        log_every=1,
        checkpoint_every=case.train_steps,
    )
    with tempfile.TemporaryDirectory(prefix="pips-jax-bench-") as tmp:
        out = out_dir or tmp
        train(config, f"{out}/run", progress=False, workers=0)
        if jax.process_index() != 0:
            return {}
        rows = [r for r in read_records(f"{out}/run/metrics.jsonl") if r["type"] == "train"]
    first, last = rows[0], rows[-1]
    return {
        "device_count": jax.device_count(),
        "steps_per_s": (last["step"] - first["step"]) / (last["elapsed"] - first["elapsed"]),
    }


def _child_command(payload: dict[str, Any]) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from pips_jax.benchmark import run_child; run_child(sys.argv[1])",
        json.dumps(payload),
    ]


def _in_subprocess(kind: str, case: Any, timeout: float | None) -> dict[str, Any]:
    """Runs one measurement in a fresh interpreter (for a :class:`ScalingCase`, one per
    process, joined on 127.0.0.1) and returns process 0's JSON result."""
    fields = dataclasses.asdict(case)
    env = dict(os.environ)
    processes = 1
    if isinstance(case, ScalingCase):
        processes = case.processes
        env["XLA_FLAGS"] = " ".join(
            [env.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={case.devices}"]
        ).strip()
    port = free_port() if processes > 1 else None
    with tempfile.TemporaryDirectory(prefix="pips-jax-bench-") as shared:
        procs = [
            subprocess.Popen(
                _child_command(
                    {
                        "kind": kind,
                        "case": fields,
                        "job": None if port is None else [f"127.0.0.1:{port}", processes, i],
                        "out_dir": shared,
                    }
                ),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(processes)
        ]
        try:
            outputs = [p.communicate(timeout=timeout) for p in procs]
        except subprocess.TimeoutExpired:
            return {**fields, "error": f"timed out after {timeout:.0f} s"}
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
    for p, (_, err) in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            tail = (err.strip().splitlines() or ["no output"])[-1]
            return {**fields, "error": tail}
    return json.loads(outputs[0][0].strip().splitlines()[-1])


def run_child(payload: str) -> None:
    """The measurement a fresh interpreter makes for :func:`_in_subprocess`: ``payload``
    is JSON ``{"kind": "forward", "video" or "scaling", "case": <the case's fields>,
    "job": None or [address, processes, process id], "out_dir": a folder the processes
    share}``; prints the result as one JSON line."""
    spec = json.loads(payload)
    if spec.get("job"):
        from pips_jax import runtime

        address, processes, process_id = spec["job"]
        runtime.join(runtime.JobOptions(address, processes, process_id))
    if spec["kind"] == "forward":  # cases of runs before PIPs++ have no "model"
        result = measure_forward(ForwardCase(**spec["case"]))
    elif spec["kind"] == "video":
        result = measure_video(VideoCase(**spec["case"]))
    else:
        result = measure_scaling(ScalingCase(**spec["case"]), spec.get("out_dir"))
    print(json.dumps(result))


# ------------------------------------------------------------------------ suites
REFERENCE = ForwardCase()
PIPS2_REFERENCE = ForwardCase(model="pips2")


#: The suites of :func:`suite`.
CONFIGS = ("reference", "sweep", "video", "all", "scaling", "stream")


def scaling_suite(max_devices: int = 4, processes: bool = True) -> list[tuple[str, Any]]:
    """Tracking and training on 1, 2, 4, ... ``max_devices`` devices of one process and
    (``processes``) on 2 processes of one device each."""
    cases: list[tuple[str, Any]] = []
    for task in ("track", "train"):
        d = 1
        while d <= max_devices:
            cases.append(("scaling", ScalingCase(task=task, devices=d)))
            d *= 2
        if processes:
            cases.append(("scaling", ScalingCase(task=task, devices=1, processes=2)))
    return cases


def pips2_suite(config: str = "all", runs: int = 5) -> list[tuple[str, Any]]:
    """PIPs++'s cases: ``reference`` (one window: 8 frames of 360x640, 256 points, 6
    iterations, float32), ``sweep`` (reference, windows of 16, 32 and 64 frames, 1024
    points), ``video`` (a 50-frame video in windows of 16 and one 100-frame one in
    windows of 64, 256 points) and ``all``."""
    if config in ("scaling", "stream"):
        raise ValueError(f"the {config} suite runs PIPs; expected --model pips with it")
    few = max(2, runs // 2)
    ref = dataclasses.replace(PIPS2_REFERENCE, runs=runs)
    cases: list[tuple[str, Any]] = [("forward", ref)]
    if config in ("sweep", "all"):
        for frames in (16, 32, 64):
            cases.append(("forward", dataclasses.replace(ref, frames=frames, runs=few)))
        cases.append(("forward", dataclasses.replace(ref, num_points=1024, runs=few)))
    if config in ("video", "all"):
        cases.append(("video", VideoCase("pips2", 16, num_frames=50, num_points=256)))
        cases.append(("video", VideoCase("pips2", 64, num_frames=100, num_points=256)))
    return cases


def suite(config: str = "all", runs: int = 5, model: str = "pips") -> list[tuple[str, Any]]:
    """The cases of a suite: ``reference``, ``sweep`` (reference + bfloat16 +
    resolution and N sweeps), ``video`` (whole-video tracking, a 100-frame stream
    included), ``all`` (those three), ``stream`` (streams of 100 and 1,000 frames
    beside a 100-frame offline run) or ``scaling`` (:func:`scaling_suite`); cheap cases first so a partial run still
    reports the most. ``model="pips2"``: PIPs++'s (:func:`pips2_suite`)."""
    if config not in CONFIGS:
        raise ValueError(
            f"unknown benchmark config {config!r}; expected one of {', '.join(CONFIGS)}"
        )
    if model not in MODELS:
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, found {model!r}")
    if model == "pips2":
        return pips2_suite(config, runs)
    if config == "scaling":
        import jax

        if jax.default_backend() == "cpu":  # forced devices, sharing the cores
            return scaling_suite(4)
        # the machine's accelerators, in one process (two processes on one machine
        # would each need their own devices)
        return scaling_suite(jax.device_count(), processes=False)
    few = max(2, runs // 2)
    cases: list[tuple[str, Any]] = [("forward", dataclasses.replace(REFERENCE, runs=runs))]
    if config in ("sweep", "all"):
        for precision in FORWARD_PRECISIONS[1:]:
            cases.append(
                ("forward", dataclasses.replace(REFERENCE, runs=runs, precision=precision))
            )
        for h, w in ((256, 256), (512, 896)):
            cases.append(("forward", ForwardCase(height=h, width=w, runs=runs)))
        for n in (1024, 4096):
            cases.append(("forward", ForwardCase(num_points=n, runs=runs if n <= 1024 else few)))
    if config in ("video", "all"):
        cases.append(("video", VideoCase(num_frames=50, num_points=1024)))
        cases.append(("video", VideoCase(num_frames=100, num_points=1024)))
        cases.append(("video", VideoCase(num_frames=100, num_points=256, stream=True)))
    if config == "stream":  # memory flat in the video's length, beside an offline run
        for frames in (100, 1000):
            cases.append(("video", VideoCase(num_frames=frames, num_points=256, stream=True)))
        cases.append(("video", VideoCase(num_frames=100, num_points=256)))
        return cases[1:]
    if config in ("sweep", "all"):
        cases.append(("forward", ForwardCase(num_points=16384, runs=few)))
    if config in ("video", "all"):
        cases.append(("video", VideoCase(num_frames=100, num_points=10_000)))
    return cases


def run_suite(
    config: str = "all",
    runs: int = 5,
    timeout: float | None = None,
    on_result=None,
    model: str = "pips",
) -> dict[str, Any]:
    """Runs a suite, each case in its own process; returns ``{"machine", "results"}``."""
    report: dict[str, Any] = {"machine": machine_info(), "model": model, "results": []}
    for kind, case in suite(config, runs, model):
        r = {"kind": kind, **_in_subprocess(kind, case, timeout)}
        report["results"].append(r)
        if on_result is not None:
            on_result(r, report)
    return report


def format_table(report: dict[str, Any]) -> str:
    """Markdown tables of a :func:`run_suite` report, machine in the header."""
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cpu_count']} cores), backend {m['backend']} ({m['device']}), "
        f"JAX {m['jax_version']}",
    ]
    if any(r["kind"] == "forward" for r in report["results"]):
        lines += [
            "",
            "| model | N | frames | resolution | precision | compile s | forward s (min / median) | peak memory | GFLOP/s | points x frames / s | from float32, px (max / mean) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for r in report["results"]:
        if r["kind"] != "forward":
            continue
        res = f"{r['height']}x{r['width']}"
        head = (
            f"| {_label(r)} | {r['num_points']} | {r.get('frames', 8)} | {res} | {r['precision']}"
        )
        if "error" in r:
            lines.append(f"{head} | error: {r['error']} | | | | | |")
            continue
        lines.append(
            f"{head} | {r['compile_s']:.1f} | "
            f"{r['forward_s_min']:.3f} / {r['forward_s_median']:.3f} | {r['peak_memory_bytes'] / 2**30:.2f} GiB | "
            f"{r['gflops_per_s']:.0f} | {r['points_frames_per_s']:.0f} | "
            + (
                f"{r['deviation_px_max']:.3g} / {r['deviation_px_mean']:.3g} |"
                if "deviation_px_max" in r
                else "|"
            )
        )
    video = [r for r in report["results"] if r["kind"] == "video"]
    if video:
        lines += [
            "",
            "| whole video | points | seconds | frames / s | points x frames / s | peak memory |",
            "|---|---|---|---|---|---|",
        ]
        for r in video:
            what = f"{_label(r)}: {r['num_frames']} frames {r['height']}x{r['width']}"
            if r.get("model") == "pips2":
                what += f", windows of {r['window']}"
            if r.get("stream"):
                what += ", streamed"
                if "latency_frames" in r:
                    what += (
                        f" (latency {r['latency_frames']} frames, {r['max_held_frames']} maps held)"
                    )
            if "error" in r:
                lines.append(f"| {what} | {r['num_points']} | error: {r['error']} | | | |")
                continue
            lines.append(
                f"| {what} | {r['num_points']} | {r['seconds']:.1f} | {r['frames_per_s']:.2f} | "
                f"{r['points_frames_per_s']:.0f} | {r['peak_memory_bytes'] / 2**30:.2f} GiB |"
            )
    scaling = [r for r in report["results"] if r["kind"] == "scaling"]
    if scaling:
        lines += [
            "",
            "| scaling | processes | devices in all | track: points x frames / s | train: steps / s |",
            "|---|---|---|---|---|",
        ]
        for r in scaling:
            what = (
                f"track {r['num_frames']} frames {r['height']}x{r['width']}, {r['num_points']} points"
                if r["task"] == "track"
                else f"train small model, batch {r['batch_size']} of 128x128"
            )
            devices = r["devices"] * r["processes"]
            if "error" in r:
                lines.append(f"| {what} | {r['processes']} | {devices} | error: {r['error']} | |")
            elif r["task"] == "track":
                lines.append(
                    f"| {what} | {r['processes']} | {devices} | {r['points_frames_per_s']:.0f} | |"
                )
            else:
                lines.append(
                    f"| {what} | {r['processes']} | {devices} | | {r['steps_per_s']:.3f} |"
                )
    return "\n".join(lines)


def _label(result: dict[str, Any]) -> str:
    return "PIPs++" if result.get("model") == "pips2" else "PIPs"


def reference_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The keys ``pips-jax benchmark --config reference --json`` promises."""
    ref = next(r for r in report["results"] if r["kind"] == "forward")
    keys = ("forward_s_min", "forward_s_median", "compile_s", "peak_memory_bytes")
    out = {k: ref.get(k) for k in keys}
    out.update(
        {"backend": report["machine"]["backend"], "jax_version": report["machine"]["jax_version"]}
    )
    out.update({"machine": report["machine"], "results": report["results"]})
    return out
