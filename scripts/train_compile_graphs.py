"""How many graphs a compiled training run compiles, and when (`TrainConfig.compile`, docs/performance.md): each
compilation costs a GPU call minutes, so a step whose form changes every few steps would eat the call. Trains the
tiny sizes with the `fast` preset's loss terms, lip mode with the snap, scheduled sampling, registration shifts from
step 4, the renderer's adversarial term from step 8 and an evaluation every 6 steps, then prints the seconds of
each step (a long one compiled) and Dynamo's graph count.

    TORCH_LOGS=recompiles,graph_breaks python scripts/train_compile_graphs.py DATASET WORK [--steps 14]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
import torch._dynamo.utils

from deltaplane.presets import get_preset
from deltaplane.training.trainer import train
from gpu_lip_motion import variant_configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path, help="a new run directory")
    parser.add_argument("--steps", type=int, default=14)
    args = parser.parse_args()
    model_config, train_config = variant_configs("lips+snap1+tsnap1+sample0.3+reg2+compile", "tiny")
    fast, _ = get_preset("fast")
    model_config = dataclasses.replace(model_config, loss=fast.loss)
    train_config = dataclasses.replace(
        train_config, steps=args.steps, log_every=1, eval_every=6, checkpoint_every=1000, sample_every=1000,
        registration=dataclasses.replace(train_config.registration, start=4),
        adversarial=dataclasses.replace(train_config.adversarial, start=8))
    train(args.dataset, args.work, model_config, train_config, "tiny", torch.device("cpu"), progress=False)
    rows = [json.loads(line) for line in (args.work / "log.jsonl").read_text().splitlines()]
    times = [(row["step"], row["train_seconds"]) for row in rows if "loss" in row]
    print("seconds per step:", ", ".join(f"{step}: {now - before:.1f}"
                                         for (_, before), (step, now) in zip([(0, 0.0)] + times, times)))
    print("Dynamo:", dict(torch._dynamo.utils.counters["stats"]))


if __name__ == "__main__":
    main()
