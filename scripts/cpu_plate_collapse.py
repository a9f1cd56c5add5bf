"""Reproduce (or rule out) the plate-mode collapse on the CPU, at the tiny preset's size (docs/background.md "Why the
field emptied"). Trains one variant of `gpu_lip_motion.variant_configs` on the tiny preset with all learning rates
scaled, the given deltaplane warm-up and the collapse guard off, then prints the held-out PSNRs, the predictor's
mean |Δθ| / lr over its first steps after the warm-up, and the training log's opacity, deltaplane size and loss terms.

    python scripts/cpu_plate_collapse.py DATASET RUN_DIR --variant lips+norm+mplanes8+plate+solid5 \\
        --steps 450 --warmup 300 --lr-scale 5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_lip_motion import variant_configs  # noqa: E402

from deltaplane.training import trainer  # noqa: E402
from deltaplane.training.guard import CollapseGuardConfig  # noqa: E402


@contextlib.contextmanager
def recording_predictor_steps(ratios: list[float]):
    """While active, the trainer's Adam appends the predictor group's mean |Δθ| / lr after each step it trains."""

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            group = next(g for g in self.param_groups if g["name"] == "predictor")
            before = [p.detach().clone() for p in group["params"]]
            result = super().step(closure)
            if group["lr"] > 0:
                moved = torch.cat([(p.detach() - b).abs().flatten() for p, b in zip(group["params"], before)])
                ratios.append((moved.mean() / group["lr"]).item())
            return result

    original = trainer.torch.optim.Adam
    trainer.torch.optim.Adam = Recording
    try:
        yield
    finally:
        trainer.torch.optim.Adam = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run_dir", type=Path, help="a new folder for the run")
    parser.add_argument("--variant", default="lips+norm+mplanes8+plate+solid5")
    parser.add_argument("--steps", type=int, default=450)
    parser.add_argument("--warmup", type=int, default=300, help="deltaplane warm-up steps")
    parser.add_argument("--lr-scale", type=float, default=5.0, help="factor on every learning rate")
    args = parser.parse_args()

    model_config, train_config = variant_configs(args.variant, "tiny")
    scale = args.lr_scale
    train_config = dataclasses.replace(
        train_config, steps=args.steps, warmup_delta_steps=args.warmup, eval_every=args.steps, log_every=5,
        checkpoint_every=10**6, sample_every=10**6, lr_identity=train_config.lr_identity * scale,
        lr_renderer=train_config.lr_renderer * scale, lr_predictor=train_config.lr_predictor * scale,
        lr_audio=train_config.lr_audio * scale, collapse_guard=CollapseGuardConfig(drop_db=1e9, opacity_ratio=0.0))
    ratios: list[float] = []
    started = time.time()
    with recording_predictor_steps(ratios):
        result = trainer.train(args.dataset, args.run_dir, model_config, train_config, "tiny", torch.device("cpu"),
                               progress=False)
    print(f"{args.variant}: {result.step} steps in {time.time() - started:.0f} s;",
          {k: round(v, 2) for k, v in result.metrics.items() if "psnr" in k})
    after = (1, 5, 10, 20, 50, 100, 200)
    print("predictor mean |Δθ| / lr, steps", after, "after the warm-up:",
          [round(ratios[i - 1], 2) for i in after if i <= len(ratios)])
    print("step opacity delta_rms train_psnr loss terms")
    for line in (args.run_dir / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "train/opacity" in record and record["step"] % 10 == 0:
            terms = " ".join(f"{k[5:]}={v:.3f}" for k, v in record.items() if k.startswith("loss/"))
            print(record["step"], f"{record['train/opacity']:.3f}", f"{record['train/delta_rms']:.3f}",
                  f"{record['train/psnr']:.2f}", terms)


if __name__ == "__main__":
    main()
