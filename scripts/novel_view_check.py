"""Do the pseudo multi-view terms do what they say, before any GPU time: train a small run with and without them and
measure both terms (at weight 1, the same random novel cameras for every run) on the held-out test frames.

    python scripts/novel_view_check.py DATASET WORK --variants lips+norm,lips+norm+novdepth5+novcolor4 --steps 400
    python scripts/novel_view_check.py DATASET WORK --variants lips+norm+solid5,lips+norm --steps 400 --seed 1

Variants are those of scripts/gpu_lip_motion.py; prints one JSON line per variant. With --runs, no training: the
same errors for runs trained elsewhere (e.g. by `gpu_lip_motion.py --stage train`), one JSON line per run.

    python scripts/novel_view_check.py DATASET --runs RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from deltaplane.data.dataset import load_clip, make_batch
from deltaplane.inference import load_run
from deltaplane.training.trainer import train
from gpu_lip_motion import variant_configs


@torch.no_grad()
def novel_view_errors(model, dataset: Path, seed: int = 0, chunk: int = 8) -> dict[str, float]:
    """Mean `novel_depth` and `novel_color` (weight 1) over the test split, novel cameras drawn from `seed`: on the
    face mesh's vertices (test/…), and on those and the head proxy's points (test/head_…, `geometry.head_proxy`)."""
    _, test = load_clip(dataset, "test", size=model.config.output_resolution,
                        normalize_audio=model.config.audio.normalize, head_proxy=True)
    errors = {}
    for head in (False, True):
        # one measure for every run: the joint centring of mesh and head points, whatever the run trained with
        model.config = dataclasses.replace(model.config, head_proxy=head, head_proxy_apart="none",
                                           loss=dataclasses.replace(model.config.loss, novel_depth=1.0,
                                                                    novel_color=1.0))
        generator, values = torch.Generator().manual_seed(seed), {"novel_depth": [], "novel_color": []}
        for start in range(0, len(test), chunk):
            batch = make_batch(test, torch.arange(start, min(start + chunk, len(test))),
                               model.config.render_resolution)
            output, delta = model(batch.cameras, batch.conditions)
            for name, value in model.novel_view_terms(model.with_identity(delta), output, batch,
                                                      generator).items():
                values[name].append(value.item())
        errors.update({f"test/{'head_' if head else ''}{name}": sum(v) / len(v) for name, v in values.items()})
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path, nargs="?", help="folder for the trained runs (not with --runs)")
    parser.add_argument("--runs", type=Path, nargs="+", help="measure these trained runs instead of training")
    parser.add_argument("--variants", default="lips+norm,lips+norm+novdepth5+novcolor4")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="training seed (runs go to WORK/VARIANT_sSEED)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.runs:
        for run_dir in args.runs:
            model, _, _ = load_run(run_dir, device)
            print(json.dumps({"run": str(run_dir), **novel_view_errors(model, args.dataset)}), flush=True)
        return
    if args.work is None:
        parser.error("WORK is needed unless --runs is given")
    for variant in args.variants.split(","):
        model_config, train_config = variant_configs(variant, args.preset)
        run_dir = args.work / f"{variant.replace('+', '_')}_s{args.seed}"
        result = train(args.dataset, run_dir, model_config,
                       dataclasses.replace(train_config, steps=args.steps, eval_every=args.steps, seed=args.seed),
                       args.preset, device, progress=False)
        model, _, _ = load_run(run_dir, device)
        print(json.dumps({"variant": variant, "seed": args.seed, "steps": result.step,
                          **{k: v for k, v in result.metrics.items() if "psnr" in k},
                          **novel_view_errors(model, args.dataset)}), flush=True)


if __name__ == "__main__":
    main()
