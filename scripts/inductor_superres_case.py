"""The smallest case found of inductor's wrong gradients in a compiled training step (docs/performance.md
"Compiling the forward"): a small `SuperResolution` with perturbed weights, fed a channels-last feature image and
its first 3 channels (as `TriplaneTalker.render` feeds it), compiled alone, with the L1 to a random target taken
outside the compiled function. Prints, per ToRGB parameter, the relative difference of its gradient from eager,
once with the RGB slice as it is and once with a dense copy of it made before the call.

    python scripts/inductor_superres_case.py [--device cpu] [--backend inductor]
"""

from __future__ import annotations

import argparse

import torch

from deltaplane.fields.superres import SuperResolution, SuperResolutionConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="inductor")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    superres = SuperResolution(SuperResolutionConfig(input_resolution=32, block0_channels=16, block1_channels=8))
    with torch.no_grad():
        for parameter in superres.parameters():  # the zero-initialised ToRGB layers take part
            parameter.add_(0.05 * torch.randn_like(parameter))
    superres.to(device)
    base = torch.randn(2, 32 * 32, 32, device=device)  # [B, R, C] as the volume renderer gives features
    target = torch.randn(2, 3, 128, 128, device=device)

    def gradients(compiled: bool, dense: bool) -> dict[str, torch.Tensor]:
        features = base.clone().requires_grad_().permute(0, 2, 1).reshape(2, 32, 32, 32)  # channels-last strides
        rgb = features[:, :3].contiguous() if dense else features[:, :3]
        forward = torch.compile(superres.forward, backend=args.backend) if compiled else superres.forward
        superres.zero_grad()
        (forward(rgb, features) - target).abs().mean().backward()
        torch._dynamo.reset()
        return {name: p.grad.clone() for name, p in superres.named_parameters() if "torgb" in name}

    for dense in (False, True):
        eager, compiled = gradients(False, dense), gradients(True, dense)
        differences = {name: float((eager[name] - compiled[name]).norm() / eager[name].norm().clamp_min(1e-20))
                       for name in eager}
        print("dense RGB copy" if dense else "RGB slice     ",
              ", ".join(f"{name} {value:.3g}" for name, value in differences.items()))


if __name__ == "__main__":
    main()
