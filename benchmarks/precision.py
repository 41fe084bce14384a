"""Accuracy cost of the reduced-precision (bfloat16) mode on the exactness fixtures.

    python benchmarks/precision.py [--json OUT.json]

Runs the two reference cases of tests/data (outputs of the original PyTorch PIPs on
synthetic weights) in float32 and in bfloat16 and reports the max and mean pixel
difference of the final coordinates, against float32 and against the original.
Needs a checkout (the fixtures are not part of the installed package).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pips_jax import ModelConfig, Pips  # noqa: E402
from pips_jax.checkpoint.convert import convert_state_dict  # noqa: E402
from reference import load_case, reference_state_dict  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    rows = []
    for name in ("case_a_stride4.npz", "case_b_stride8.npz"):
        case = load_case(name)
        config = ModelConfig(stride=int(case["stride"]))
        params = convert_state_dict(reference_state_dict(), config)
        frames, xys = jnp.asarray(case["rgbs"])[None], jnp.asarray(case["xys"])[None]
        coords = {}
        for dtype in ("float32", "bfloat16"):
            model = Pips(config, compute_dtype=dtype)
            out = jax.jit(model.forward, static_argnames="iters")(
                params, frames, xys, iters=int(case["iters"])
            )
            coords[dtype] = np.asarray(out.coords[-1, 0])
        vs32 = np.linalg.norm(coords["bfloat16"] - coords["float32"], axis=-1)
        vsref = np.linalg.norm(coords["bfloat16"] - case["coords"][-1], axis=-1)
        rows.append(
            {
                "case": name,
                "bf16_vs_f32_max_px": float(vs32.max()),
                "bf16_vs_f32_mean_px": float(vs32.mean()),
                "bf16_vs_original_max_px": float(vsref.max()),
                "bf16_vs_original_mean_px": float(vsref.mean()),
                "f32_vs_original_max_px": float(
                    np.abs(coords["float32"] - case["coords"][-1]).max()
                ),
            }
        )
    for r in rows:
        print(
            f"{r['case']}: bfloat16 vs float32 max {r['bf16_vs_f32_max_px']:.3f} px, mean {r['bf16_vs_f32_mean_px']:.3f} px; "
            f"float32 vs original max {r['f32_vs_original_max_px']:.1e} px"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
