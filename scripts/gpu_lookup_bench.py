"""Time the tri-plane lookup with its backward at the `fast` preset's training size, through `grid_sample`
(`sample_triplane_grid`) and through the Triton kernels (`sample_triplane` on CUDA), and print their largest
difference (docs/performance.md "Training").

    PYTHONPATH=src python3 scripts/gpu_lookup_bench.py [--points 786432] [--repeats 10]

Planes [4, 3, 32, 256, 256], float32; the default points are one ray chunk's coarse pass (32,768 rays × 24 samples
per frame).
"""

from __future__ import annotations

import argparse
import time

import torch

from deltaplane.fields.triplane import sample_triplane, sample_triplane_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=32768 * 24, help="points per frame")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions (after 3 untimed)")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device("cuda")
    planes = torch.randn(4, 3, 32, 256, 256, device=device, requires_grad=True)
    points = (torch.rand(4, args.points, 3, device=device) - 0.5) * 0.9
    for name, lookup in (("grid_sample", sample_triplane_grid), ("triton", sample_triplane)):
        for repeat in range(args.repeats + 3):
            if repeat == 3:
                torch.cuda.synchronize()
                started = time.perf_counter()
            features = lookup(planes, points, 1.0)
            torch.autograd.grad(features, planes, torch.ones_like(features))
        torch.cuda.synchronize()
        milliseconds = (time.perf_counter() - started) / args.repeats * 1e3
        print(f"{name}: {milliseconds:.2f} ms forward + backward, {4 * args.points / 1e6:.1f} M points")
    difference = (sample_triplane_grid(planes, points) - sample_triplane(planes, points)).abs().max().item()
    print(f"max |difference| {difference:.2g}")


if __name__ == "__main__":
    main()
