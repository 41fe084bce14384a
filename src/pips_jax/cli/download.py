"""``pips-jax download``: fetch the released PIPs weights from the Hugging Face Hub,
convert them once and cache the converted parameters."""

from __future__ import annotations

import argparse
import time


def add_parser(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download, convert and cache the released PIPs weights",
        description=(
            "Download model-000200000.pth from the Hugging Face repository aharley/pips "
            "(honours HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE), convert it once and cache "
            "the converted parameters (folder: $PIPS_JAX_CACHE or ~/.cache/pips-jax)."
        ),
    )
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint.hub import download_reference

    t0 = time.perf_counter()
    out = download_reference(force=args.force)
    print(f"released PIPs weights ready: {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
