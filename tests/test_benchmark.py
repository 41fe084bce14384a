"""The benchmark's FLOP count and its command line (speed itself is not tested)."""

import json

import jax
import jax.numpy as jnp
import pytest

from pips_jax import ModelConfig, Pips
from pips_jax.benchmark import encoder_flops, forward_flops, iteration_flops
from pips_jax.cli import main

TINY = ModelConfig(
    latent_dim=16,
    encoder_dims=(8, 12),
    encoder_stem_dim=8,
    mixer_dim=32,
    mixer_depth=2,
    corr_levels=2,
    corr_radius=1,
    embed_dim=8,
)


def test_encoder_flops_hand_worked():
    # 16x16 input, stride 4: stem 7x7/2 -> 8x8; stage 1 (8 ch) at 8x8; stage 2 (12 ch)
    # at 4x4 with a 1x1 downsample; conv2 3x3 20->32 and conv3 1x1 32->16 at 4x4.
    stem = 2 * 64 * 49 * 3 * 8
    stage1 = 4 * (2 * 64 * 9 * 8 * 8)
    stage2 = 2 * 16 * 9 * 8 * 12 + 3 * (2 * 16 * 9 * 12 * 12) + 2 * 16 * 8 * 12
    head = 2 * 16 * 9 * 20 * 32 + 2 * 16 * 32 * 16
    assert encoder_flops(TINY, 16, 16) == stem + stage1 + stage2 + head


def _xla_flops(fn, *args, **static):
    compiled = jax.jit(fn, static_argnames=tuple(static)).lower(*args, **static).compile()
    cost = compiled.cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]


def test_flops_agree_with_xla_cost_analysis():
    # On the released model's sizes the multiply-adds dominate, so XLA's own count
    # (which also counts elementwise work but skips multiplications with convolution
    # padding) must agree with the analytic one within 10%. XLA counts the body of the
    # refinement scan once whatever its length, so one iteration is compared (plus the
    # pyramid and point features around it).
    cfg = ModelConfig()
    model = Pips(cfg)
    params = model.param_shapes()
    # Frames are encoded one at a time in a loop whose body XLA counts once: one frame.
    frames = jax.ShapeDtypeStruct((1, 1, 128, 192, 3), jnp.uint8)
    encoder = _xla_flops(model.encode, params, frames)
    assert encoder == pytest.approx(encoder_flops(cfg, 128, 192), rel=0.1)
    fmaps = jax.ShapeDtypeStruct((1, cfg.S, 32, 48, cfg.latent_dim), jnp.float32)
    xys = jax.ShapeDtypeStruct((1, 64, 2), jnp.float32)
    step = _xla_flops(model.forward_features, params, fmaps, xys, iters=1)
    assert step == pytest.approx(iteration_flops(cfg, 64), rel=0.1)
    # ... and the analytic count scales with the points as XLA's does.
    xys4 = jax.ShapeDtypeStruct((1, 256, 2), jnp.float32)
    step4 = _xla_flops(model.forward_features, params, fmaps, xys4, iters=1)
    assert step4 - step == pytest.approx(
        iteration_flops(cfg, 256) - iteration_flops(cfg, 64), rel=0.1
    )


def test_reference_forward_is_about_a_teraflop():
    f = forward_flops(ModelConfig(), 256, 360, 640, 6)
    assert 1.0e12 < f < 1.3e12


def test_benchmark_command_writes_the_promised_keys(tmp_path, monkeypatch):
    # A small stand-in for the reference case keeps the test fast; the command path,
    # subprocess isolation and JSON keys are the real ones.
    import pips_jax.benchmark as bench

    monkeypatch.setattr(
        bench, "REFERENCE", bench.ForwardCase(num_points=8, height=64, width=64, iters=1, runs=1)
    )
    out = tmp_path / "ref.json"
    assert main(["benchmark", "--config", "reference", "--runs", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    for key in (
        "forward_s_min",
        "forward_s_median",
        "compile_s",
        "peak_memory_bytes",
        "backend",
        "jax_version",
    ):
        assert key in data
    assert data["backend"] == "cpu" and data["forward_s_min"] > 0 and data["peak_memory_bytes"] > 0


def test_faster_precisions_report_their_distance_from_full_float32():
    from pips_jax.benchmark import ForwardCase, measure_forward
    from small_model import SMALL

    small = dict(num_points=8, height=64, width=64, iters=2, runs=1)
    exact = measure_forward(ForwardCase(**small), SMALL)
    assert "deviation_px_max" not in exact  # float32 is the reference
    # On a CPU XLA's default matrix products are already full float32: no distance.
    default = measure_forward(ForwardCase(**small, precision="default"), SMALL)
    assert default["deviation_px_max"] == 0.0 and default["deviation_px_mean"] == 0.0
    rounded = measure_forward(ForwardCase(**small, precision="bfloat16"), SMALL)
    assert 0 < rounded["deviation_px_mean"] <= rounded["deviation_px_max"] < 64


def test_pips2_flops_agree_with_xla_cost_analysis():
    from pips_jax.benchmark import pips2_iteration_flops
    from pips_jax.config import Pips2Config
    from pips_jax.model.pips2 import Pips2

    cfg = Pips2Config(S=16)
    model = Pips2(cfg)
    params = model.param_shapes()
    fmaps = jax.ShapeDtypeStruct((1, cfg.S, 16, 24, cfg.latent_dim), jnp.float32)
    xys = jax.ShapeDtypeStruct((1, 64, 2), jnp.float32)
    step = _xla_flops(model.forward_features, params, fmaps, xys, iters=1)
    assert step == pytest.approx(pips2_iteration_flops(cfg, 64), rel=0.1)
    # hand-worked: the delta_block dominates, 2 x S x k x sum(C_in C_out) per point
    widths = [(718, 128)] + [(128, 128)] * 4 + [(128, 256), (256, 256), (256, 256)]
    widths += [(256, 256), (256, 512), (512, 512), (512, 512), (512, 512), (512, 1024)]
    widths += [(1024, 1024)] * 3
    macs = 3 * sum(a * b for a, b in widths) + 1024 * 2
    corr = 3 * 4 * 8 * 8 * 128
    assert pips2_iteration_flops(cfg, 1) == pytest.approx(2 * 16 * (macs + corr))


def test_pips2_benchmark_command_writes_the_promised_keys(tmp_path, monkeypatch):
    import pips_jax.benchmark as bench

    monkeypatch.setattr(
        bench,
        "PIPS2_REFERENCE",
        bench.ForwardCase(model="pips2", frames=4, num_points=8, height=64, width=64, iters=1),
    )
    out = tmp_path / "ref.json"
    args = ["benchmark", "--model", "pips2", "--config", "reference", "--runs", "1"]
    assert main([*args, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["forward_s_min"] > 0 and data["peak_memory_bytes"] > 0
    (case,) = data["results"]
    assert case["model"] == "pips2" and case["frames"] == 4


def test_pips2_whole_video_benchmark_chains_windows():
    from pips_jax.benchmark import VideoCase, measure_video
    from pips_jax.config import Pips2Config

    small = Pips2Config(
        S=4, latent_dim=16, encoder_dims=(8, 8, 8, 8), encoder_stem_dim=8, delta_dim=8,
        delta_blocks=2, embed_dim=8,
    )  # fmt: skip
    case = VideoCase("pips2", 4, num_frames=10, num_points=8, height=64, width=64, iters=1)
    r = measure_video(case, small)
    assert r["seconds"] > 0 and r["frames_per_s"] == pytest.approx(10 / r["seconds"])


def test_stream_benchmark_reports_latency_and_held_maps():
    from pips_jax.benchmark import VideoCase, measure_video, suite
    from small_model import SMALL

    case = VideoCase(num_frames=30, num_points=8, height=32, width=48, iters=1, stream=True)
    r = measure_video(case, SMALL)
    # Every point confidently visible: windows advance S - 1 = 7 frames, so a frame waits
    # at most S - 1 pushes and no more than S maps are ever held, for any length.
    assert 1 <= r["latency_frames"] <= SMALL.S - 1
    assert 2 <= r["max_held_frames"] <= SMALL.S
    assert r["frames_per_s"] == pytest.approx(30 / r["seconds"])
    streams = [c for kind, c in suite("stream") if c.stream]
    assert [c.num_frames for c in streams] == [100, 1000] and len(suite("stream")) == 3
