"""Resume on the GPU against a straight run (docs/performance.md "Two host costs removed"): train a preset for
STEPS steps in one go, and again stopping at STEPS // 2 and resuming from that checkpoint; print both loss curves.
On CUDA the two agree closely but not bitwise (the triplane lookup's backward adds atomically); on the CPU they are
identical (`tests/training/test_trainer.py` pins that, and the CUDA case where the preprocessing packages exist).

    python scripts/gpu_resume_check.py DATASET WORK [--preset fast] [--steps 6] [--device cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from deltaplane.presets import get_preset
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path, help="folder for the two runs (must not hold them yet)")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    model_config, train_config = get_preset(args.preset)
    half = args.steps // 2
    # the deltaplane trains from the first step, so that the resumed half updates every group
    train_config = dataclasses.replace(train_config, steps=args.steps, log_every=1, checkpoint_every=half,
                                       eval_every=0, sample_every=args.steps + 1, warmup_delta_steps=0)
    device = torch.device(args.device)
    straight, resumed = args.work / "straight", args.work / "resumed"
    train(args.dataset, straight, model_config, train_config, args.preset, device, progress=False)
    train(args.dataset, resumed, model_config, train_config, args.preset, device, progress=False, until_step=half)
    train(args.dataset, resumed, model_config, train_config, args.preset, device, resume=True, progress=False)
    for run in (straight, resumed):
        print(f"{run.name:9s}", " ".join(f"{row['loss']:.5f}" for row in read_log(run) if "loss" in row))


if __name__ == "__main__":
    main()
