"""Tiny-preset training of `scripts/gpu_lip_motion.py` variants on the CPU: the held-out PSNR of whole frames at
each evaluation and the training's seconds, to weigh a training option at equal steps or equal time before the GPU.

    python scripts/tiny_variants.py DATASET OUT base:160 base+win64:160 base+win64:270 [--evals 4] [--diagnostics]

Each argument is VARIANT:STEPS (the variant's changes applied to the `tiny` preset, `variant_configs(...,
preset="tiny")`); runs go to OUT/VARIANT_STEPS. Prints one line per run; with --diagnostics also the trained
model's deltaplane and token diagnostics on 16 test frames (gpu_lip_motion.py's `diagnostics`), as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from gpu_lip_motion import diagnostics, variant_configs

from deltaplane.data.dataset import load_clip
from deltaplane.inference import load_run
from deltaplane.training.logging import read_log
from deltaplane.training.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("runs", nargs="+", help="VARIANT:STEPS")
    parser.add_argument("--evals", type=int, default=4, help="held-out evaluations per run, evenly spaced")
    parser.add_argument("--diagnostics", action="store_true", help="print the deltaplane and token diagnostics")
    args = parser.parse_args()
    for run in args.runs:
        variant, _, steps = run.rpartition(":")
        model_config, train_config = variant_configs(variant, preset="tiny")
        train_config = dataclasses.replace(train_config, steps=int(steps), eval_every=int(steps) // args.evals,
                                           checkpoint_every=10**6, sample_every=10**6)
        run_dir = args.out / f"{variant.replace('+', '_')}_{steps}"
        started = time.perf_counter()
        train(args.dataset, run_dir, model_config, train_config, "tiny", torch.device("cpu"), progress=False)
        evals = [round(r["test/psnr"], 2) for r in read_log(run_dir) if "test/psnr" in r]
        print(f"{variant:24s} {steps:>5s} steps {time.perf_counter() - started:6.1f} s  test PSNR {evals}")
        if args.diagnostics:
            found = held_out_diagnostics(run_dir, args.dataset)
            print(json.dumps({key: round(value, 5) for key, value in found.items()
                              if key.startswith(("delta", "identity", "token_std/", "dead_units/", "attention/"))}))


def held_out_diagnostics(run_dir: Path, dataset: Path) -> dict[str, float]:
    """gpu_lip_motion.py's `diagnostics` of the run's model on 16 evenly spaced test frames (as that script's)."""
    model, _, _ = load_run(run_dir, torch.device("cpu"))
    config = model.config
    _, test = load_clip(dataset, "test", size=config.output_resolution, normalize_audio=config.audio.normalize,
                        brows=config.conditions.brows)
    return diagnostics(model, test, torch.linspace(0, len(test) - 1, 16).round().long())


if __name__ == "__main__":
    main()
