"""Times the original PyTorch PIPs++ (aharley/pips2) on this machine's CPU, on the
reference case of ``pips-jax benchmark --model pips2``: one window of 8 frames of
360x640, 256 points, 6 iterations, float32, batch 1, random weights and inputs.

Run it in a separate virtualenv with torch, einops and prettytable (torch never
becomes a dependency of pips-jax), on a checkout of the original code:

    git clone https://github.com/aharley/pips2 /tmp/pips2
    python benchmarks/pips2_torch.py --pips2 /tmp/pips2 --json torch.json

The original's forward calls ``.cuda()`` once (for a loss it does not compute here);
on a CPU that call is made a no-op. Nothing else is changed. Prints one JSON line with
the same keys as the pips-jax forward benchmark.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pips2", required=True, help="a checkout of aharley/pips2")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--iters", type=int, default=6)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import torch

    sys.path.insert(0, args.pips2)
    from nets.pips2 import Pips

    torch.Tensor.cuda = lambda self, *a, **k: self  # the one .cuda() of the forward
    torch.manual_seed(0)
    model = Pips(stride=8).eval()
    g = torch.Generator().manual_seed(0)
    rgbs = torch.randint(0, 256, (1, args.frames, 3, args.height, args.width), generator=g)
    rgbs = rgbs.float()
    xy = torch.rand(1, 1, args.points, 2, generator=g)
    xy = xy * torch.tensor([args.width - 1, args.height - 1]).float()
    trajs = xy.repeat(1, args.frames, 1, 1)
    times = []
    with torch.no_grad():
        t0 = time.perf_counter()
        model(trajs, rgbs, iters=args.iters)  # warm-up
        first = time.perf_counter() - t0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            model(trajs, rgbs, iters=args.iters)
            times.append(time.perf_counter() - t0)
    result = {
        "implementation": "aharley/pips2 (PyTorch)",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "num_points": args.points,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "iters": args.iters,
        "first_s": first,
        "forward_s_min": min(times),
        "forward_s_median": sorted(times)[len(times) // 2],
        "forward_s_all": times,
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
