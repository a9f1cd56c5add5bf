"""The rendering bench (`deltaplane bench --random-weights`) for `scripts/gpu_lip_motion.py` variants of the `fast`
preset, one process: what an option costs the fast path before a trained run exists (docs/performance.md).

    python scripts/bench_variant.py base base+srin2 base+idx2 [--batch 1] [--frames 240] [--background plate]

Each variant's model is the preset's random-weights bench model (`bench.random_weights_model`) with the
`TriplaneTalkerConfig` fields that the variant changes; the reference and the fast path render the same inputs,
as in `deltaplane bench`. Every batch size compiles for about a minute on the GPU, so a call benches a few variants
at one batch size. Prints one table per variant, then a summary line each.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from deltaplane.bench import (FastRenderConfig, bench_inputs, format_report, random_weights_model, run_bench,
                              synthetic_driving)
from deltaplane.presets import get_preset
from gpu_lip_motion import variant_configs


def model_changes(variant: str) -> dict[str, object]:
    """The `TriplaneTalkerConfig` fields that `variant` sets apart from the `fast` preset's."""
    preset, changed = get_preset("fast")[0], variant_configs(variant)[0]
    return {field.name: getattr(changed, field.name) for field in dataclasses.fields(preset)
            if getattr(changed, field.name) != getattr(preset, field.name)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", help="gpu_lip_motion.py variants, e.g. base base+srin2")
    parser.add_argument("--batch", default="1", help="batch sizes, comma-separated")
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--background", choices=("field", "plate"), default="field")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    batches = [int(size) for size in args.batch.split(",")]
    summary = []
    for variant in args.variants:
        changes = model_changes(variant)
        model = random_weights_model("fast", device, background=args.background, **changes)
        driving = synthetic_driving(args.frames, model.config.conditions.landmark_inputs)
        conditions, cam2world = bench_inputs(model, driving, args.frames)
        report = run_bench(model, conditions, cam2world, batches, {"fast": FastRenderConfig.for_device(device)},
                           f"fast preset + {variant}, random weights, background {args.background}")
        print(format_report(report), flush=True)
        for result in report.results:
            if result.path == "fast":
                summary.append(f"{variant:<24} batch {result.batch}: {result.frames_per_second:7.1f} frames/s, "
                               f"p50 {result.latency_p50_ms:.2f} ms, max|diff| {result.max_abs_diff:.1e}")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print("\n".join(summary))


if __name__ == "__main__":
    main()
