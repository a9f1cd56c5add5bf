"""What confining the mouth planes costs in rendering speed (docs/lip-motion.md "Run 16"): random-weight `fast`
models (`deltaplane.bench.random_weights_model`, as `deltaplane bench --random-weights` builds them) with the mouth
planes unconfined, confined to their box on all three planes, and confined on the xy plane alone
(`TriplaneTalkerConfig.mouth_confined`, `mouth_planes_on`), each through the reference path and the fast path at
batch 1; one `deltaplane bench` table per model.

    PYTHONPATH=src python3 scripts/bench_confined.py --device cuda --frames 240

The reference path's frames/s also stand for the training field's cost: both sample the planes with torch ops.
"""

from __future__ import annotations

import argparse

import torch

from deltaplane.bench import bench_inputs, format_report, random_weights_model, run_bench, synthetic_driving
from deltaplane.fastpath import FastRenderConfig

MODELS = {"unconfined": {}, "confined on all three planes": {"mouth_confined": True},
          "confined on the xy plane": {"mouth_confined": True, "mouth_planes_on": (0,)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--frames", type=int, default=240)
    args = parser.parse_args()
    device = torch.device(args.device)
    for name, changes in MODELS.items():
        model = random_weights_model("fast", device, **changes)
        driving = synthetic_driving(args.frames, model.config.conditions.landmark_inputs)
        conditions, cam2world = bench_inputs(model, driving, args.frames)
        report = run_bench(model, conditions, cam2world, [1], {"fast": FastRenderConfig.for_device(device)},
                           f"fast preset, random weights, mouth planes {name}")
        print(format_report(report), flush=True)


if __name__ == "__main__":
    main()
