"""``pips-jax download``: fetch the released weights of PIPs (from the Hugging Face Hub)
or PIPs++ (the original's reference archive), convert them once and cache the converted
parameters."""

from __future__ import annotations

import argparse
import time

from pips_jax.errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "download",
        help="download, convert and cache the released PIPs or PIPs++ weights",
        description=(
            "PIPs (default): download model-000200000.pth from the Hugging Face repository "
            "aharley/pips (honours HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE). PIPs++ "
            "(--model pips2): download the reference archive from the address the "
            "original's get_reference_model.sh uses (or --url) and read "
            "reference_model/model-000200000.pth out of it without extracting anything "
            "else. Either is converted once and cached (folder: $PIPS_JAX_CACHE or "
            "~/.cache/pips-jax); nothing is left behind if a step fails."
        ),
    )
    p.add_argument(
        "--model",
        choices=("pips", "pips2"),
        default="pips",
        help="which family's released weights: pips (default) or pips2 (PIPs++)",
    )
    p.add_argument(
        "--url",
        default=None,
        help="PIPs++ only: fetch the reference archive (.tar.gz) from this address instead",
    )
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pips_jax.checkpoint import hub

    t0 = time.perf_counter()
    if args.model == "pips2":
        out = hub.download_pips2_reference(url=args.url, force=args.force, progress=True)
        print(
            f"released PIPs++ weights ready: {out} ({time.perf_counter() - t0:.1f} s); "
            f"use them with --checkpoint {out}"
        )
        return 0
    if args.url is not None:
        raise InputError(
            "--url is for --model pips2 (the PIPs++ archive); the PIPs weights come from "
            "the Hugging Face Hub: set HF_ENDPOINT to use a mirror"
        )
    out = hub.download_reference(force=args.force)
    print(f"released PIPs weights ready: {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
