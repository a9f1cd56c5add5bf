"""EG3D volume rendering as pure functions: stratified + importance sampling and the MipRayMarcher2 compositor.

Nothing here owns parameters or imports `fields`/`models`: the model passes a `field_fn(points) -> (features,
density)` closure to `render_rays`. The compositor returns features in the field's own range (EG3D's decoder
gives [-0.001, 1.001]); EG3D's final `×2 − 1` to [-1, 1] is done by the model, not here.

Precision: the density activation, the transmittance and the compositing run in (at least) float32
whatever the input dtype, so the functions are safe under bf16 autocast; float64 inputs stay float64 (gradcheck).
Random numbers come from `generator` when given; it must live on the rays' device.

One deliberate deviation from EG3D: the composite depth is clamped to each ray's own [min z, max z], not to the
min/max over the whole batch, so results do not depend on how the caller chunks rays. Everything else (stratified
bins reaching one bin past `far`, the importance smoothing and its half-bin offset, see `sample_importance`) is
kept as in EG3D so that an EG3D prior renders as it was trained.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

FieldFn = Callable[[Float[Tensor, "batch points 3"]],
                   tuple[Float[Tensor, "batch points channels"], Float[Tensor, "batch points 1"]]]
"""A radiance field closure: world points → (features, raw density before the softplus activation)."""


@dataclass(frozen=True)
class VolumeRenderConfig:
    """Sampling and compositing settings (EG3D/Talk3D defaults)."""

    num_coarse: int = 48
    """Stratified samples per ray (EG3D depth_resolution); at least 2."""
    num_importance: int = 48
    """Importance samples per ray drawn from the coarse weights; 0 disables the fine pass."""
    near: float = 2.25
    """Start of the sampled depth range (EG3D ray_start), in world units along the unit ray direction."""
    far: float = 3.3
    """End of the range (EG3D ray_end). As in EG3D the last stratified bin starts here, so samples reach one bin
    beyond it."""
    density_bias: float = -1.0
    """Added to the raw density before the softplus: σ_act = softplus(σ + density_bias)."""
    jitter: bool = True
    """Random stratified jitter and random importance u while the model trains (EG3D); False gives bin midpoints
    and fixed u (k + ½)/S_f."""
    jitter_at_inference: bool = False
    """Jitter in eval mode too, as EG3D does. Off, a render is reproducible and still where the scene is still: the
    random samples make rays that graze a thin surface miss it now and then, dark specks that flicker from frame to
    frame (obama_20s's collar: docs/novel-views.md "Speckle on the torso")."""

    def sampling(self, training: bool) -> VolumeRenderConfig:
        """These settings as a render uses them: `jitter` while training, and in eval mode only with
        `jitter_at_inference`."""
        return replace(self, jitter=self.jitter and (training or self.jitter_at_inference))


class Composited(NamedTuple):
    """Output of `composite` / `render_rays`."""

    features: Float[Tensor, "batch rays channels"]
    """Σ w·features (no background, no ×2 − 1)."""
    depth: Float[Tensor, "batch rays 1"]
    """Σ w·z_mid / Σ w, clamped to the ray's sampled depth range (far end where nothing is hit)."""
    weights: Float[Tensor, "batch rays intervals 1"]
    """Per-interval weights, one fewer than samples."""
    accumulation: Float[Tensor, "batch rays 1"]
    """Σ w, the opacity of the ray in [0, 1]."""
    spread: Float[Tensor, "batch rays 1"]
    """Σ w·(z_mid − d)² / Σ w with d = Σ w·z_mid / Σ w: the variance of the ray's termination depth (0 for an opaque
    surface, large for fog spread along the ray); 0 where nothing is hit."""


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 for half/bfloat16 inputs, float64 stays float64."""
    return torch.promote_types(dtype, torch.float32)


def sample_stratified(origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"], num: int,
                      near: float, far: float, jitter: bool, generator: torch.Generator | None = None
                      ) -> Float[Tensor, "batch rays num 1"]:
    """EG3D stratified depths: bin k starts at linspace(near, far, num)[k] and is one bin, (far − near)/(num − 1),
    wide; a sample is uniform in its bin (`jitter`) or at its midpoint. Only the shape, dtype and device of the
    rays are used (both are taken so every sampler shares one signature)."""
    if num < 2:
        raise ValueError(f"need at least 2 stratified samples per ray, got {num}")
    if origins.shape != directions.shape:
        raise ValueError(f"origins {tuple(origins.shape)} and directions {tuple(directions.shape)} differ")
    batch, rays, _ = origins.shape
    dtype = _compute_dtype(origins.dtype)
    starts = torch.linspace(near, far, num, dtype=dtype, device=origins.device)  # [S]
    if jitter:
        offsets = torch.rand(batch, rays, num, 1, dtype=dtype, device=origins.device, generator=generator)
    else:
        offsets = torch.full((batch, rays, num, 1), 0.5, dtype=dtype, device=origins.device)
    return starts[:, None] + offsets * ((far - near) / (num - 1))  # [B, R, S, 1]


def _smoothed_weights(weights: Float[Tensor, "rays intervals"]) -> Float[Tensor, "rays intervals"]:
    """EG3D's smoothing: max_pool1d(k2, s1, p1), avg_pool1d(k2, s1), + 0.01."""
    pooled = F.max_pool1d(weights[:, None], kernel_size=2, stride=1, padding=1)  # [N, 1, S]
    return F.avg_pool1d(pooled, kernel_size=2, stride=1)[:, 0] + 0.01  # [N, S − 1]


def _inverse_cdf(bins: Float[Tensor, "rays edges"], weights: Float[Tensor, "rays bins"],
                 uniforms: Float[Tensor, "rays num"], eps: float = 1e-5) -> Float[Tensor, "rays num"]:
    """Piecewise-linear inverse CDF of the pdf `weights` on the bin edges `bins` (EG3D/NeRF sample_pdf)."""
    pdf = (weights + eps) / (weights + eps).sum(-1, keepdim=True)
    cdf = torch.cat((torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)), -1)  # [N, bins + 1]
    index = torch.searchsorted(cdf, uniforms.contiguous(), right=True)
    below = (index - 1).clamp_min(0)
    above = index.clamp_max(cdf.shape[-1] - 1)
    cdf_below, cdf_above = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_below, bin_above = bins.gather(-1, below), bins.gather(-1, above)
    denominator = cdf_above - cdf_below
    denominator = torch.where(denominator < eps, torch.ones_like(denominator), denominator)
    return bin_below + (uniforms - cdf_below) / denominator * (bin_above - bin_below)


def sample_importance(depths: Float[Tensor, "batch rays samples 1"], weights: Float[Tensor, "batch rays intervals 1"],
                      num: int, deterministic: bool, generator: torch.Generator | None = None
                      ) -> Float[Tensor, "batch rays num 1"]:
    """`num` depths drawn from the (smoothed) coarse weights, without gradient.

    As EG3D: the S − 1 interval weights are smoothed (`_smoothed_weights`), their inner S − 3 values form a pdf on
    the bins between consecutive depth midpoints, and u is uniform (or the fixed quantiles (k + 0.5)/num when
    `deterministic`). EG3D quirk kept on purpose: interval k's weight lands on the bin centred on z_k rather than
    z_{k+½}, i.e. half a coarse bin nearer the camera; the fine pass still composites exact depths.
    """
    batch, rays, samples, _ = depths.shape
    with torch.no_grad():
        dtype = _compute_dtype(depths.dtype)
        depths_flat = depths.reshape(batch * rays, samples).to(dtype)  # [N, S]
        weights_flat = weights.reshape(batch * rays, samples - 1).to(dtype)  # [N, S − 1]
        midpoints = 0.5 * (depths_flat[:, :-1] + depths_flat[:, 1:])  # [N, S − 1]
        smoothed = _smoothed_weights(weights_flat)[:, 1:-1]  # [N, S − 3]
        if deterministic:
            uniforms = (torch.arange(num, dtype=dtype, device=depths.device) + 0.5) / num
            uniforms = uniforms.expand(batch * rays, num)  # [N, num]
        else:
            uniforms = torch.rand(batch * rays, num, dtype=dtype, device=depths.device, generator=generator)
        samples_flat = _inverse_cdf(midpoints, smoothed, uniforms)  # [N, num]
    return samples_flat.reshape(batch, rays, num, 1)


def composite(colors: Float[Tensor, "batch rays samples channels"], densities: Float[Tensor, "batch rays samples 1"],
              depths: Float[Tensor, "batch rays samples 1"], density_bias: float = -1.0) -> Composited:
    """EG3D MipRayMarcher2 (midpoint rule) on samples sorted by depth.

    δ_i = z_{i+1} − z_i; colours, densities and depths are averaged between neighbours; σ_i = softplus(σ_mid +
    density_bias); α_i = 1 − exp(−σ_i·δ_i); T_i = exp(−Σ_{j<i} σ_j·δ_j); w_i = T_i·α_i. The features are NOT
    rescaled: the caller applies EG3D's `×2 − 1`.

    T_i is EG3D's Π_{j<i} (1 − α_j + 1e-10) without the 1e-10 (at most 1e-10 per sample apart), summed in log space:
    `cumprod`'s backward checks its input for zeros, a device→host sync that cost 10 ms of host time per call in a
    training step (docs/performance.md), and its gradient divides by the factors where this one has none.

    α is computed as −expm1(−σδ): for a faint sample (σδ < 6e-8) `1 − exp` rounds to 0 while its gradient does not,
    and the spread's division by that zero accumulation (clamped to 1e-10) then turned a gradient of 1e-4 into
    1e4 pushing the density down: what emptied plate-mode runs (docs/background.md).
    """
    dtype = _compute_dtype(densities.dtype)
    densities, depths = densities.to(dtype), depths.to(dtype)
    deltas = depths[:, :, 1:] - depths[:, :, :-1]  # [B, R, S − 1, 1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2  # [B, R, S − 1, C]
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    optical_depth = F.softplus(densities_mid + density_bias) * deltas  # σ_i·δ_i, [B, R, S − 1, 1]
    alpha = -torch.expm1(-optical_depth)
    transmittance = torch.exp(-torch.cumsum(F.pad(optical_depth[:, :, :-1], (0, 0, 1, 0)), dim=-2))  # exclusive sum
    weights = alpha * transmittance  # [B, R, S − 1, 1]
    features = (weights * colors_mid).sum(dim=-2)  # [B, R, C]
    accumulation = weights.sum(dim=-2)  # [B, R, 1]
    expected = (weights * depths_mid).sum(dim=-2) / accumulation.clamp_min(1e-10)  # [B, R, 1]
    spread = (weights * (depths_mid - expected[:, :, None]).square()).sum(dim=-2) / accumulation.clamp_min(1e-10)
    depth = torch.where(accumulation > 0, expected, torch.inf)
    depth = torch.minimum(torch.maximum(depth, depths.amin(dim=-2)), depths.amax(dim=-2))
    return Composited(features, depth, weights, accumulation, spread)


def _query(field_fn: FieldFn, origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
           depths: Float[Tensor, "batch rays samples 1"]
           ) -> tuple[Float[Tensor, "batch rays samples channels"], Float[Tensor, "batch rays samples 1"]]:
    """Evaluate the field at origins + depths·directions."""
    batch, rays, samples, _ = depths.shape
    points = origins[:, :, None, :] + depths.to(origins.dtype) * directions[:, :, None, :]  # [B, R, S, 3]
    features, density = field_fn(points.reshape(batch, rays * samples, 3))  # [B, R·S, C], [B, R·S, 1]
    return features.reshape(batch, rays, samples, -1), density.reshape(batch, rays, samples, 1)


def render_rays(field_fn: FieldFn, origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
                config: VolumeRenderConfig, generator: torch.Generator | None = None) -> Composited:
    """EG3D ImportanceRenderer: coarse pass, importance sampling, fine pass, then one composite over the merged,
    depth-sorted coarse + fine samples. `directions` should be unit vectors (depths are distances). The caller
    chunks rays to bound memory (the field sees B·R·(num_coarse or num_importance) points per call)."""
    depths_coarse = sample_stratified(origins, directions, config.num_coarse, config.near, config.far,
                                      config.jitter, generator)
    colors_coarse, densities_coarse = _query(field_fn, origins, directions, depths_coarse)
    coarse = composite(colors_coarse, densities_coarse, depths_coarse, config.density_bias)
    if config.num_importance == 0:
        return coarse
    depths_fine = sample_importance(depths_coarse, coarse.weights, config.num_importance,
                                    deterministic=not config.jitter, generator=generator)
    colors_fine, densities_fine = _query(field_fn, origins, directions, depths_fine)
    depths_all = torch.cat((depths_coarse, depths_fine), dim=-2)  # [B, R, S_c + S_f, 1]
    depths_all, order = torch.sort(depths_all, dim=-2)
    colors_all = torch.cat((colors_coarse, colors_fine), dim=-2)
    colors_all = colors_all.gather(-2, order.expand(-1, -1, -1, colors_all.shape[-1]))  # [B, R, S, C]
    densities_all = torch.cat((densities_coarse, densities_fine), dim=-2).gather(-2, order)  # [B, R, S, 1]
    return composite(colors_all, densities_all, depths_all, config.density_bias)
