"""Runs the pips-jax benchmark suite and writes JSON + a Markdown table.

    python benchmarks/run.py --config all --json benchmarks/results/cpu.json \
        --table benchmarks/results/cpu.md

Equivalent to `pips-jax benchmark`; kept as a script so the suite can be run from a
checkout. Each configuration runs in its own process (clean peak-memory numbers).
"""

from pips_jax.cli import main

if __name__ == "__main__":
    import sys

    raise SystemExit(main(["benchmark", *sys.argv[1:]]))
