"""Volume rendering: stratified/importance sampling, the MipRayMarcher2 compositor (closed forms, gradcheck, bounds)
and a full coarse + fine render of a sphere."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from deltaplane.render.volume import (FieldFn, VolumeRenderConfig, composite, render_rays, sample_importance,
                                      sample_stratified)

NEAR, FAR = 2.25, 3.3


def _raw_density(activated: float) -> float:
    """The raw σ whose activation softplus(σ − 1) equals `activated`."""
    return 1.0 + math.log(math.expm1(activated))


def _rays(batch: int, rays: int) -> tuple[torch.Tensor, torch.Tensor]:
    origins = torch.zeros(batch, rays, 3)
    directions = torch.nn.functional.normalize(torch.randn(batch, rays, 3), dim=-1)
    return origins, directions


def test_stratified_bins_and_jitter() -> None:
    origins, directions = _rays(2, 3)
    step = (FAR - NEAR) / 47
    starts = torch.linspace(NEAR, FAR, 48)[:, None]
    midpoints = sample_stratified(origins, directions, 48, NEAR, FAR, jitter=False)
    assert midpoints.shape == (2, 3, 48, 1)
    torch.testing.assert_close(midpoints, (starts + step / 2).expand(2, 3, 48, 1))
    jittered = sample_stratified(origins, directions, 48, NEAR, FAR, jitter=True,
                                 generator=torch.Generator().manual_seed(1))
    assert ((jittered >= starts) & (jittered <= starts + step)).all()
    assert not torch.allclose(jittered, midpoints)
    again = sample_stratified(origins, directions, 48, NEAR, FAR, jitter=True,
                              generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(jittered, again)


def test_sampling_jitters_in_training_and_at_inference_only_when_asked() -> None:
    config = VolumeRenderConfig()
    assert config.sampling(training=True).jitter and not config.sampling(training=False).jitter
    assert replace(config, jitter_at_inference=True).sampling(training=False).jitter
    assert not replace(config, jitter=False, jitter_at_inference=True).sampling(training=True).jitter
    assert config.sampling(training=False) == replace(config, jitter=False)


def test_constant_density_closed_form_opacity_and_depth() -> None:
    activated, samples = 2.0, 257
    depths = torch.linspace(NEAR, FAR, samples).reshape(1, 1, samples, 1)
    densities = torch.full_like(depths, _raw_density(activated))
    colors = torch.tensor([0.2, 0.7, 1.0]).expand(1, 1, samples, 3)
    result = composite(colors, densities, depths)
    length = FAR - NEAR
    # Midpoint rule: Σδ = z_last − z_first, so the opacity is exact whatever the number of samples.
    expected_opacity = 1 - math.exp(-activated * length)
    torch.testing.assert_close(result.accumulation, torch.tensor([[[expected_opacity]]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(result.features, expected_opacity * colors[:, :, 0], atol=1e-6, rtol=0)
    # E[z | absorbed in [near, far]] for an exponential of rate d truncated to length L.
    expected_depth = NEAR + 1 / activated - length * math.exp(-activated * length) / expected_opacity
    torch.testing.assert_close(result.depth, torch.tensor([[[expected_depth]]]), atol=1e-4, rtol=0)
    # Var[z | absorbed in [near, far]] of that truncated exponential.
    survival = math.exp(-activated * length)
    expected_spread = 1 / activated**2 - length**2 * survival / (1 - survival) ** 2
    torch.testing.assert_close(result.spread, torch.tensor([[[expected_spread]]]), atol=1e-4, rtol=0)

    uneven = torch.sort(torch.rand(1, 1, 30, 1) * length + NEAR, dim=-2).values
    uneven[:, :, 0], uneven[:, :, -1] = NEAR, FAR
    result = composite(colors[:, :, :30], densities[:, :, :30], uneven)
    torch.testing.assert_close(result.accumulation, torch.tensor([[[expected_opacity]]]), atol=1e-6, rtol=0)


def test_weights_are_bounded_and_empty_rays_sit_at_far() -> None:
    generator = torch.Generator().manual_seed(0)
    depths = torch.sort(NEAR + (FAR - NEAR) * torch.rand(3, 4, 20, 1, generator=generator), dim=-2).values
    densities = 20 * torch.randn(3, 4, 20, 1, generator=generator)
    result = composite(torch.rand(3, 4, 20, 2, generator=generator), densities, depths)
    assert result.weights.shape == (3, 4, 19, 1)
    assert (result.weights >= 0).all() and (result.accumulation <= 1 + 1e-6).all()
    torch.testing.assert_close(result.accumulation, result.weights.sum(dim=-2))
    assert ((result.depth >= depths[:, :, 0]) & (result.depth <= depths[:, :, -1])).all()

    empty = composite(torch.rand(1, 1, 20, 2), torch.full((1, 1, 20, 1), -200.0), depths[:1, :1])
    assert empty.accumulation.item() < 1e-12
    torch.testing.assert_close(empty.depth, depths[:1, :1, -1])


def test_faint_rays_keep_their_opacity_and_a_small_spread_gradient() -> None:
    """A nearly empty ray (what the backdrop's rays become in plate mode) has the closed-form opacity, not 0, and
    its depth spread moves with the density as gently as an ordinary ray's: with `1 − exp` the opacity rounded to
    0 while its gradient did not, and the spread's gradient reached 1e4."""
    depths = torch.linspace(NEAR, FAR, 48).reshape(1, 1, 48, 1)
    gradients = {}
    for raw in (0.0, -5.0, -10.0, -15.0, -20.0):
        densities = torch.full((1, 1, 48, 1), raw, requires_grad=True)
        result = composite(torch.zeros(1, 1, 48, 3), densities + torch.linspace(0, 1, 48).reshape(1, 1, 48, 1), depths)
        result.spread.sum().backward()
        gradients[raw] = densities.grad.abs().sum().item()
        if raw <= -10.0:  # softplus(σ − 1)·δ summed over the ray, to first order
            sigma = torch.nn.functional.softplus(torch.linspace(0, 1, 48)[:-1] + 0.5 / 47 + raw - 1.0)
            expected = (sigma * (FAR - NEAR) / 47).sum().item()
            assert math.isclose(result.accumulation.item(), expected, rel_tol=1e-3), (raw, result.accumulation)
    assert max(gradients.values()) < 2 * gradients[0.0], gradients  # the old form: 1e4 at −15


def test_composite_gradcheck_float64() -> None:
    generator = torch.Generator().manual_seed(0)
    colors = torch.rand(1, 2, 6, 2, dtype=torch.float64, generator=generator, requires_grad=True)
    densities = torch.randn(1, 2, 6, 1, dtype=torch.float64, generator=generator).mul(3).requires_grad_()
    depths = torch.linspace(NEAR, FAR, 6, dtype=torch.float64).reshape(1, 1, 6, 1).repeat(1, 2, 1, 1)
    depths = (depths + 0.01 * torch.rand(1, 2, 6, 1, dtype=torch.float64, generator=generator)).requires_grad_()

    def outputs(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = composite(colors, densities, depths)
        return result.features, result.depth, result.weights, result.accumulation, result.spread

    assert torch.autograd.gradcheck(outputs, (colors, densities, depths))


def test_weights_match_eg3d_cumprod_transmittance() -> None:
    """The log-space transmittance is EG3D's Π (1 − α + 1e-10), from empty to opaque rays."""
    generator = torch.Generator().manual_seed(0)
    densities = torch.randn(3, 64, 48, 1, generator=generator).mul(8).add(torch.tensor([-10.0, 0.0, 6.0])[:, None,
                                                                                                  None, None])
    depths = torch.linspace(NEAR, FAR, 48).reshape(1, 1, 48, 1).expand(3, 64, -1, -1)
    result = composite(torch.rand(3, 64, 48, 3, generator=generator), densities, depths)
    mid = (densities[:, :, 1:] + densities[:, :, :-1]) / 2
    alpha = 1 - torch.exp(-torch.nn.functional.softplus(mid - 1.0) * (depths[:, :, 1:] - depths[:, :, :-1]))
    eg3d = torch.cumprod(torch.cat((torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10), dim=-2), dim=-2)
    torch.testing.assert_close(result.weights, alpha * eg3d[:, :, :-1], atol=2e-6, rtol=1e-4)
    assert result.accumulation.min() < 0.05 and result.accumulation.max() > 0.999  # empty and opaque rays both seen


def test_low_precision_inputs_composite_in_float32() -> None:
    depths = torch.linspace(NEAR, FAR, 10).reshape(1, 1, 10, 1)
    result = composite(torch.rand(1, 1, 10, 3).bfloat16(), torch.randn(1, 1, 10, 1).bfloat16(), depths)
    assert result.weights.dtype == result.depth.dtype == result.features.dtype == torch.float32


def test_importance_samples_concentrate_on_the_weights() -> None:
    depths = sample_stratified(*_rays(1, 2), 48, NEAR, FAR, jitter=False)
    weights = torch.zeros(1, 2, 47, 1)
    weights[0, 0, 20], weights[0, 1, 35] = 1.0, 2.0
    for deterministic in (True, False):
        samples = sample_importance(depths, weights, 64, deterministic=deterministic,
                                    generator=torch.Generator().manual_seed(0))
        assert samples.shape == (1, 2, 64, 1)
        for ray, interval in ((0, 20), (1, 35)):
            # Within two coarse bins of the weighted interval [z_k, z_{k+1}] (EG3D places it half a bin nearer).
            window = depths[0, ray, interval - 2], depths[0, ray, interval + 2]
            near_peak = (samples[0, ray] >= window[0]) & (samples[0, ray] <= window[1])
            assert near_peak.float().mean() > 0.75  # the 0.01 floor spreads the rest along the ray
    fixed = sample_importance(depths, weights, 64, deterministic=True)
    torch.testing.assert_close(fixed, sample_importance(depths, weights, 64, deterministic=True))
    assert (fixed.diff(dim=-2) >= 0).all()


def _sphere_field(radius: float) -> FieldFn:
    def field_fn(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inside = points.norm(dim=-1, keepdim=True) < radius
        density = torch.where(inside, 500.0, -20.0)
        colors = torch.tensor([0.25, 0.5, 1.0]).expand(*points.shape[:-1], 3)
        return colors, density

    return field_fn


def test_render_rays_finds_a_sphere_surface() -> None:
    radius, distance = 0.3, 2.7
    angles = torch.tensor([0.0, 0.03, 0.07, 0.2])  # the last ray misses the sphere
    origins = torch.tensor([0.0, 0.0, distance]).expand(1, 4, 3)
    directions = torch.stack((torch.sin(angles), torch.zeros(4), -torch.cos(angles)), dim=-1)[None]
    config = VolumeRenderConfig(jitter=False)
    result = render_rays(_sphere_field(radius), origins, directions, config)
    impact = distance * torch.sin(angles[:3])
    expected = distance * torch.cos(angles[:3]) - torch.sqrt(radius**2 - impact**2)
    torch.testing.assert_close(result.depth[0, :3, 0], expected, atol=5e-3, rtol=0)
    torch.testing.assert_close(result.accumulation[0, :3, 0], torch.ones(3), atol=1e-4, rtol=0)
    assert result.accumulation[0, 3].item() < 1e-6 and result.weights.shape == (1, 4, 95, 1)
    torch.testing.assert_close(result.features, result.accumulation * torch.tensor([0.25, 0.5, 1.0]))

    halves = [render_rays(_sphere_field(radius), origins[:, part], directions[:, part], config)
              for part in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close(torch.cat([half.depth for half in halves], dim=1), result.depth)

    jittered = VolumeRenderConfig(jitter=True)
    first, second = (render_rays(_sphere_field(radius), origins, directions, jittered,
                                 generator=torch.Generator().manual_seed(3)) for _ in range(2))
    torch.testing.assert_close(first.depth, second.depth)
    torch.testing.assert_close(first.depth[0, :3, 0], expected, atol=5e-3, rtol=0)


def test_render_rays_under_bfloat16_autocast() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 4)

    def field_fn(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = layer(points)
        return torch.sigmoid(output[..., 1:]), output[..., :1]

    origins, directions = torch.tensor([0.0, 0.0, 2.7]).expand(1, 5, 3), _rays(1, 5)[1]
    config = VolumeRenderConfig(num_coarse=8, num_importance=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = render_rays(field_fn, origins, directions, config)
    assert result.depth.dtype == result.weights.dtype == torch.float32
    assert torch.isfinite(result.features).all() and result.weights.shape == (1, 5, 15, 1)
