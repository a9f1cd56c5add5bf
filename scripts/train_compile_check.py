"""Would `torch.compile` of the training step's forward pay (docs/performance.md "Compiling the training step")?
One batch of a variant's training step (the model, its loss terms and the lip regressions; no adversarial term, no
optimiser), eager and compiled, with fixed ray samples and inductor's random numbers taken from torch's own
(`fallback_random`), so both compute the same function: prints the loss of each, the parameters whose gradients
differ by more than `--tolerance` (relative), the compilation time and the median wall time of a step
(forward + backward) each way.

    python scripts/train_compile_check.py DATASET [--variant base] [--device cuda] [--backend inductor]
                                          [--mode reduce-overhead] [--batch 4] [--steps 10]

On the 2-core CPU (torch 2.13, `--variant base+res128 --batch 2`): one graph, no graph break; `aot_eager` and
`inductor` give the eager gradients (inductor only since the super-resolution's upsampling avoids interpolate's
backward when compiled, `fields.resample.bilinear_upsample2x`); compiled steps 0.59× eager's time.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch
import torch._inductor.config

from deltaplane.data.dataset import lip_frames, load_clip, make_batch
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.training.precision import autocast, default_precision
from gpu_lip_motion import variant_configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--variant", default="base")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: no codegen)")
    parser.add_argument("--mode", default=None, help="torch.compile mode (reduce-overhead: CUDA graphs, which remove "
                                                     "the host's launch time per operation)")
    parser.add_argument("--batch", type=int, default=4, help="frames per step (the fast preset's 4)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps each way")
    parser.add_argument("--tolerance", type=float, default=1e-2, help="relative gradient difference reported")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed", "16-mixed"), default=None,
                        help="autocast as training has it (default: the trainer's for the device, bf16 on CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    model_config, train_config = variant_configs(args.variant)
    model_config = dataclasses.replace(model_config, volume=dataclasses.replace(model_config.volume, jitter=False))
    manifest, clip = load_clip(args.dataset, "train", size=model_config.output_resolution,
                               normalize_audio=model_config.audio.normalize, head_proxy=model_config.head_proxy)
    clip = clip.to(device)
    model_config = dataclasses.replace(model_config, audio=dataclasses.replace(model_config.audio,
                                                                               feature_dim=manifest.audio.dim))
    torch.manual_seed(0)
    model = TriplaneTalker(model_config).to(device).train()
    if model.lips is not None:
        model.lips.fit(clip.mouth_shapes)
    with torch.no_grad():  # the zero-initialised layers (ToRGB, the deltaplane's last conv) take part
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    batch = make_batch(clip, torch.randint(len(clip), (args.batch,), device=device), model_config.render_resolution)
    regression = ([lip_frames(clip, torch.randint(len(clip), (train_config.lip_batch,), device=device))
                   for _ in range(model.lips.config.regressions)] if model.lips is not None else None)

    precision = args.precision or default_precision(device)

    def step() -> torch.Tensor:
        with autocast(precision, device):
            output, delta = model(batch.cameras, batch.conditions, mouth_shape=batch.mouth_shape,
                                  lower_face=batch.lower_face, plate_warp=batch.plate_warp)
            return sum(model.loss_terms(output, delta, batch, None, lip_frames=regression).values())

    def timed(function, count: int) -> tuple[float, dict[str, torch.Tensor], list[float]]:
        times = []
        for _ in range(count):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)  # the novel cameras and lip-teaching draws: the same each call
            start = time.perf_counter()
            loss = function()
            loss.backward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
        grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}
        return float(loss.detach()), grads, times

    loss_eager, grads_eager, times_eager = timed(step, args.steps)
    print(f"step eager {1000 * statistics.median(times_eager):.1f} ms (median of {args.steps})", flush=True)
    torch._inductor.config.fallback_random = True
    compiled = torch.compile(step, backend=args.backend, mode=args.mode)
    loss_compiled, grads_compiled, times_compiled = timed(compiled, args.steps + 1)
    print(f"variant {args.variant}, {device}, backend {args.backend}, mode {args.mode}, batch {args.batch}, "
          f"{precision}")
    print(f"loss eager {loss_eager:.6f}, compiled {loss_compiled:.6f}")
    missing = sorted(set(grads_eager) ^ set(grads_compiled))
    if missing:
        print("gradients on one side only:", ", ".join(missing))
    differing = 0
    for name, grad in grads_eager.items():
        if name in grads_compiled:
            relative = float((grad - grads_compiled[name]).norm() / grad.norm().clamp_min(1e-20))
            if relative > args.tolerance:
                differing += 1
                print(f"  {name}: relative difference {relative:.3g} (norms {float(grad.norm()):.3g} / "
                      f"{float(grads_compiled[name].norm()):.3g})")
    print(f"{differing} of {len(grads_eager)} gradients differ by more than {args.tolerance:g}")
    print(f"first compiled step (compilation) {times_compiled[0]:.1f} s")
    print(f"step compiled {1000 * statistics.median(times_compiled[1:]):.1f} ms (median of {args.steps})")


if __name__ == "__main__":
    main()
