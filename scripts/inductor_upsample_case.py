"""The smallest case found of inductor's wrong gradients in a compiled training step (docs/performance.md
"Compiling the forward"), in plain torch: two ×2 bilinear super-resolution stages with ToRGB skips, fed a
channels-last feature image and its first 3 channels, as `TriplaneTalker.render` feeds the super-resolution.

    python scripts/inductor_upsample_case.py [--device cpu] [--backend inductor]

Prints the relative difference from eager of each weight's gradient, compiled with `F.interpolate` and with the
shifted-slice form that `fields.resample.bilinear_upsample2x` takes under torch.compile, each with the RGB slice as
it is and as a dense copy. On the 2-core CPU (torch 2.13, inductor's C++ code) interpolate's slice case gives the
first ToRGB weight a difference of 1 (no gradient): the generated backward zero-fills the index_put accumulators of
the last upsampling and sums them into that gradient in one fused kernel, before the accumulation runs. Every other
case agrees to 1e-6.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from deltaplane.fields.resample import _upsample2x_axis


def interpolated(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def sliced(x: torch.Tensor) -> torch.Tensor:
    return _upsample2x_axis(_upsample2x_axis(x, -2, repeat_edge=True), -1, repeat_edge=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    channels = 8
    weights = {"torgb0": torch.randn(3, channels, 1, 1, generator=generator),
               "conv": torch.randn(channels, channels, 3, 3, generator=generator),
               "torgb1": torch.randn(3, channels, 1, 1, generator=generator)}
    weights = {name: w.to(device).requires_grad_() for name, w in weights.items()}
    rays = torch.randn(2, 16 * 16, channels, generator=generator).to(device)  # [B, R, C] as the renderer gives
    target = torch.randn(2, 3, 64, 64, generator=generator).to(device)

    def superres(rgb: torch.Tensor, features: torch.Tensor, up) -> torch.Tensor:  # noqa: ANN001
        hidden = up(features)
        rgb = up(rgb) + F.conv2d(hidden, weights["torgb0"])
        hidden = F.conv2d(up(hidden), weights["conv"], padding=1)
        return up(rgb) + F.conv2d(hidden, weights["torgb1"])

    def gradients(up, compiled: bool, dense: bool) -> dict[str, torch.Tensor]:  # noqa: ANN001
        features = rays.clone().requires_grad_().permute(0, 2, 1).reshape(2, channels, 16, 16)  # channels-last
        rgb = features[:, :3].contiguous() if dense else features[:, :3]
        forward = torch.compile(superres, backend=args.backend) if compiled else superres
        for weight in weights.values():
            weight.grad = None
        (forward(rgb, features, up) - target).abs().mean().backward()
        torch._dynamo.reset()
        return {name: w.grad.clone() for name, w in weights.items()}

    for up in (interpolated, sliced):
        for dense in (False, True):
            eager, compiled = gradients(up, False, dense), gradients(up, True, dense)
            differences = {name: float((eager[name] - compiled[name]).norm() / eager[name].norm().clamp_min(1e-20))
                           for name in eager}
            print(f"{up.__name__:12s} {'dense RGB copy' if dense else 'RGB slice':14s}",
                  ", ".join(f"{name} {value:.3g}" for name, value in differences.items()))


if __name__ == "__main__":
    main()
