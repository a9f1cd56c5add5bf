"""Does a field fit to bf16 rays render softer with float32 rays? (docs/sharpness.md "Rays in bf16"): the fit of
that section, on the CPU.

    python scripts/bf16_ray_fit.py DATASET OUT.json --rays bf16 [--steps 2000] [--seed 0]

A static tri-plane field (256² planes, 32 channels, the OSG decoder; no audio, no super-resolution) is fit by L1 to
the training frames' pixels inside their face boxes at 256², 4,096 random rays of one frame per step, 24 + 24
samples as the `fast` preset renders. `--rays bf16` casts the training rays as the trainer's bf16 autocast did
before session 37 (`bf16_ray_blur.bf16_rays`); `fp32` as it does now. Both draw the same
frames, rays and samples for one seed. Test frames are then rendered with float32 rays, as evaluation renders
them, and scored in the face box: PSNR and the Laplacian-energy ratio (`evaluation.pixels.laplacian_variance`) of
render over truth. The mouth and eyes move and a static field averages them in both runs alike.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from deltaplane.data.dataset import load_clip
from deltaplane.evaluation.pixels import laplacian_variance
from deltaplane.fields.triplane import OSGDecoderConfig, TriplaneField
from deltaplane.geometry.cameras import Cameras
from deltaplane.geometry.rays import pixel_rays
from deltaplane.render.volume import VolumeRenderConfig, render_rays
from bf16_ray_blur import bf16_rays

SIZE = 256
VOLUME = VolumeRenderConfig(num_coarse=24, num_importance=24)


def rays(clip, index: int, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions [H·W, 3] of frame `index` at SIZE², float32 or as bf16 autocast cast them."""
    cameras = Cameras(clip.cam2world[index:index + 1], clip.intrinsics[index:index + 1], SIZE, SIZE)
    origins, directions = bf16_rays(cameras) if bf16 else pixel_rays(cameras)
    return origins[0], directions[0]


def box_pixels(clip, index: int) -> torch.Tensor:
    """Row-major indices of the pixels inside frame `index`'s face box."""
    x0, y0, x1, y1 = clip.face_boxes[index].round().long().clamp(0, SIZE).tolist()
    rows, cols = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
    return (rows * SIZE + cols).flatten()


def render(field: TriplaneField, planes: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor,
           volume: VolumeRenderConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """[R, 3] colours in [-1, 1] of the rays (no background: the face box is covered by the head)."""
    result = render_rays(lambda points: field(planes, points), origins[None], directions[None], volume,
                         generator=generator)
    return result.features[0, :, :3] * 2.0 - 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rays", choices=("fp32", "bf16"), required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=4096, help="rays per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-frames", type=int, default=8)
    args = parser.parse_args()
    _, train = load_clip(args.dataset, "train", size=SIZE)
    _, test = load_clip(args.dataset, "test", size=SIZE)
    torch.manual_seed(args.seed)
    field = TriplaneField(OSGDecoderConfig())
    planes = torch.nn.Parameter(torch.randn(1, 3, 32, SIZE, SIZE) * 0.1)
    optimiser = torch.optim.Adam([{"params": [planes], "lr": 1e-2},
                                  {"params": field.parameters(), "lr": 1e-3}])
    draws = torch.Generator().manual_seed(args.seed)
    losses = []
    for step in range(args.steps):
        index = int(torch.randint(len(train), (1,), generator=draws))
        inside = box_pixels(train, index)
        chosen = inside[torch.randperm(len(inside), generator=draws)[:args.batch]]
        origins, directions = rays(train, index, args.rays == "bf16")
        target = train.frames[index].flatten(1).T[chosen].float() / 127.5 - 1.0  # [R, 3]
        colours = render(field, planes, origins[chosen], directions[chosen], VOLUME, draws)
        loss = (colours - target).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == args.steps - 1:
            print(f"step {step}: L1 {np.mean(losses[-200:]):.4f}", flush=True)

    scores = []
    evaluation = VolumeRenderConfig(num_coarse=24, num_importance=24, jitter=False)
    with torch.no_grad():
        for index in torch.linspace(0, len(test) - 1, args.test_frames).round().long().tolist():
            x0, y0, x1, y1 = test.face_boxes[index].round().long().clamp(0, SIZE).tolist()
            inside = box_pixels(test, index)
            origins, directions = rays(test, index, bf16=False)
            colours = torch.cat([render(field, planes, origins[inside[i:i + 8192]], directions[inside[i:i + 8192]],
                                        evaluation) for i in range(0, len(inside), 8192)])
            image = ((colours.clamp(-1, 1) + 1) * 127.5).round().byte().reshape(y1 - y0, x1 - x0, 3).numpy()
            truth = test.frames[index, :, y0:y1, x0:x1].permute(1, 2, 0).numpy()
            mask = np.ones(image.shape[:2], dtype=bool)
            mse = np.mean((image.astype(np.float64) - truth) ** 2)
            scores.append({"frame": index, "psnr": 10 * math.log10(255 ** 2 / mse),
                           "sharpness_ratio": laplacian_variance(image, mask) / laplacian_variance(truth, mask)})
    summary = {"rays": args.rays, "steps": args.steps, "seed": args.seed,
               "train_l1_last200": float(np.mean(losses[-200:])),
               "test_psnr": float(np.mean([s["psnr"] for s in scores])),
               "test_sharpness_ratio": float(np.mean([s["sharpness_ratio"] for s in scores])), "frames": scores}
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"{args.rays}: train L1 {summary['train_l1_last200']:.4f}, test face-box PSNR {summary['test_psnr']:.2f}, "
          f"sharpness ratio {summary['test_sharpness_ratio']:.3f}")


if __name__ == "__main__":
    main()
