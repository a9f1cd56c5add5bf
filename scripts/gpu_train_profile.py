"""Where a training step's time goes (docs/performance.md "Training"): train a variant of scripts/gpu_lip_motion.py
for WARMUP steps (compilation, allocator, caches), then STEPS more under torch.profiler, resumed from the warm-up's
checkpoint, and print per step: the host time of the trainer's scopes (`train/forward`, `train/backward`,
`train/optimizer`, `train/discriminator`, `train/wait`: the host waiting for the forward's results), the wall time,
the share of it in which the device ran a kernel, the operations the trainer's code issued that took the most host
time (counted, with their total: many cheap calls or a few dear ones; `scripts/train_op_count.py` says where a
step's operations come from), and the kernels that take the most device time.

    python scripts/gpu_train_profile.py DATASET WORK [--variant base+advstart0+nowarm] [--warmup 60] [--steps 30]
                                        [--sync-steps 3]

The default variant switches on, from the first step, what the `fast` preset starts later (the adversarial term at
step 1000, the deltaplane after its warm-up), so that the profiled steps hold every term. With $OUT set, the table
also goes to $OUT/train_profile.txt. Then SYNC_STEPS more steps run under `torch.cuda.set_sync_debug_mode("warn")`,
and the lines that made the host wait for the device are listed with their count per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import warnings
from collections import Counter
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from deltaplane.training.trainer import train
from gpu_lip_motion import variant_configs

SCOPES = ("train/forward", "train/backward", "train/optimizer", "train/discriminator", "train/wait")
"""The trainer's `record_function` scopes, in step order."""
TOP_KERNELS = 15
"""Kernels listed by their device time."""
TOP_OPERATIONS = 15
"""Host operations listed by their host time."""


def busy_share(intervals: list[tuple[float, float]], start: float, end: float) -> float:
    """The share of [start, end] covered by the union of `intervals` (µs), clipped to it."""
    covered, reach = 0.0, start
    for low, high in sorted(intervals):
        low, high = max(low, reach), min(high, end)
        if high > low:
            covered += high - low
            reach = high
    return covered / max(end - start, 1e-9)


def report(prof: profile, steps: int) -> str:
    """The table of one profiled stretch of `steps` training steps."""
    events = prof.events()
    scopes = [event for event in events if event.name in SCOPES and event.device_type == DeviceType.CPU]
    start = min(event.time_range.start for event in scopes if event.name == "train/forward")
    end = max(event.time_range.end for event in scopes if event.name == SCOPES[-1])
    kernels = [event for event in events if event.device_type == DeviceType.CUDA and event.name not in SCOPES]
    lines = [f"{steps} profiled steps: {(end - start) / 1e3 / steps:.1f} ms wall per step (first forward to last "
             "wait for its results)"]
    if kernels:
        share = busy_share([(k.time_range.start, k.time_range.end) for k in kernels], start, end)
        lines.append(f"device busy {100 * share:.0f} % of that wall time")
    lines.append(f"{'scope':22s} {'host ms':>9s}   (per step: the host's time inside the scope)")
    for name in SCOPES:
        host = sum(event.time_range.elapsed_us() for event in scopes if event.name == name)
        lines.append(f"{name:22s} {host / 1e3 / steps:9.2f}")
    # outermost operations: those the trainer's own code called (their parent is one of its scopes) and the
    # backward's nodes (the autograd engine's thread, no parent): what the host spends a step issuing, so whether it
    # is many cheap calls or a few dear ones
    issued = [event for event in events if event.device_type == DeviceType.CPU and event.name not in SCOPES
              and (event.cpu_parent is None or event.cpu_parent.name in SCOPES)
              and start <= event.time_range.start <= end]
    if issued:
        host: dict[str, list[float]] = {}
        for event in issued:
            host.setdefault(event.name, []).append(event.time_range.elapsed_us())
        total = sum(sum(times) for times in host.values())
        lines.append(f"top host operations ({len(issued) / steps:.0f} a step, {total / 1e3 / steps:.1f} host ms, "
                     f"{total / max(len(issued), 1):.1f} µs each; per step: count, host ms)")
        for name, times in sorted(host.items(), key=lambda item: -sum(item[1]))[:TOP_OPERATIONS]:
            lines.append(f"  {len(times) / steps:6.0f}  {sum(times) / 1e3 / steps:8.2f}  {name[:90]}")
    if kernels:
        totals: dict[str, float] = {}
        for kernel in kernels:
            totals[kernel.name] = totals.get(kernel.name, 0.0) + kernel.time_range.elapsed_us()
        lines.append(f"top kernels (device ms per step; all kernels {sum(totals.values()) / 1e3 / steps:.1f})")
        for name, total in sorted(totals.items(), key=lambda item: -item[1])[:TOP_KERNELS]:
            lines.append(f"  {total / 1e3 / steps:8.2f}  {name[:110]}")
    return "\n".join(lines)


def synchronizations(dataset: Path, run_dir: Path, model_config, train_config, preset: str,  # noqa: ANN001
                     device: torch.device, start: int, steps: int) -> str:
    """The code lines at which the host waited for the device in `steps` training steps after `start` (resumed from
    its checkpoint), counted per step: `torch.cuda.set_sync_debug_mode` warns at each."""
    train_config = dataclasses.replace(train_config, checkpoint_every=start + steps + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            train(dataset, run_dir, model_config, train_config, preset, device, resume=True, progress=False,
                  until_step=start + steps)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    counts = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
    lines = [f"host waits for the device, per step ({steps} steps, the final evaluation and checkpoint included)"]
    lines += [f"  {count / steps:6.1f}  {where}" for where, count in counts.most_common()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--variant", default="base+advstart0+nowarm")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--warmup", type=int, default=60, help="steps before the profiler starts")
    parser.add_argument("--steps", type=int, default=30, help="profiled steps")
    parser.add_argument("--sync-steps", type=int, default=3, help="steps run to list the host's waits (0: none)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    device = torch.device(args.device)
    model_config, train_config = variant_configs(args.variant, args.preset)
    # no evaluation, sample or checkpoint inside the profiled steps (the warm-up's end writes the one to resume)
    far = args.warmup + args.steps + 1
    train_config = dataclasses.replace(train_config, eval_every=far, sample_every=far, checkpoint_every=far,
                                       log_every=far)
    run_dir = args.work / args.variant.replace("+", "_")
    train(args.dataset, run_dir, model_config, train_config, args.preset, device, progress=False,
          until_step=args.warmup)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        train(args.dataset, run_dir, model_config, train_config, args.preset, device, resume=True, progress=False,
              until_step=args.warmup + args.steps)
    table = report(prof, args.steps)
    if args.sync_steps and device.type == "cuda":
        table += "\n" + synchronizations(args.dataset, run_dir, model_config, train_config, args.preset, device,
                                         args.warmup + args.steps, args.sync_steps)
    print(table)
    if "OUT" in os.environ:
        (Path(os.environ["OUT"]) / "train_profile.txt").write_text(table + "\n")


if __name__ == "__main__":
    main()
