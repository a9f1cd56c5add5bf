"""Fast inference path of the triplane talker: the frames of `inference.render_clip`, sooner (issue 5).

`FastRenderer(model, batch_size).render_clip(conditions, cam2world)` yields what the reference yields, within bf16
tolerance (exactly the reference's maths with `FastRenderConfig.for_device(cpu)`). What it changes, none of it the
maths (measurements in docs/performance.md):

* work that does not change between frames is done once: the identity encoding (as the reference), the unit ray
  directions in the camera frame (a frame only rotates them), a private copy of the weights in eval mode;
* the random numbers of the stratified and importance samples come from the same generator, in the same order and
  shapes as the reference draws them, but outside the step, so the step is a pure static-shape function;
* bf16 autocast for the predictor, the decoder MLP and the super-resolution (norms, rays, density, transmittance
  and compositing stay float32), channels-last super-resolution;
* the tri-plane field reads channels-last planes [B, 3, H, W, C] (C contiguous values per bilinear corner): on a
  GPU one Triton kernel does the lookup in the 3 planes, their mean and the decoder MLP (`triton_field`), elsewhere
  explicit bilinear gathers (`sample_triplane_channels_last`) feed the decoder; both have the pure-torch reference
  `triplane_field_reference`, pinned to `fields.triplane.sample_triplane` + `OSGDecoder`;
* the step (tokens → planes → volume render → super-resolution) runs at a fixed batch size (a last partial batch is
  padded), compiled with torch.compile and replayed as one CUDA graph;
* in plate mode the step takes plate warps and a per-frame flag and computes both placements of the plate (the
  dataset frames' warps and the plane), keeping the flagged one: one graph serves dataset and novel cameras alike;
* a torso of its own (`TriplaneTalkerConfig.torso_follow`): the frames' torso transforms (a matrix inverse each)
  are computed outside the step and passed in; the torso's planes are looked up at the moved points and added to
  the head's features before the decoder (the Triton field's `added` input).
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from deltaplane.audio.encoder import ema_smooth
from deltaplane.fields.triplane import (PLANE_AXES, Confinement, confine_to_box, empty_outside_box,
                                       without_unconfined_sets)
from deltaplane.geometry.cameras import (DEFAULT_FOCAL, Cameras, intrinsics_from_focal, orbit_cam2world,
                                        rows_times, transform_points)
from deltaplane.geometry.rays import pixel_rays
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.render.plate import blend_plate, over_plate
from deltaplane.render.volume import (Composited, FieldFn, VolumeRenderConfig, _inverse_cdf, _query,
                                      _smoothed_weights, composite)
from deltaplane.structs import Conditions
from deltaplane.training.precision import Precision, autocast

CompileMode = Literal["none", "default", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class FastRenderConfig:
    """How the fast path runs; `for_device` picks the defaults (everything on for CUDA, plain fp32 on CPU)."""

    precision: Precision = "bf16-mixed"
    """Autocast of the predictor, decoder MLP and super-resolution; rays, density, transmittance and compositing
    stay float32. The planes are sampled in this precision too (bf16 or fp16 planes, float32 weights)."""
    channels_last: bool = True
    """Run the super-resolution convolutions on channels-last activations."""
    compile_mode: CompileMode = "default"
    """torch.compile mode of the step's three stages (planes, volume, super-resolution); "none" runs them eagerly."""
    field: Literal["triton", "torch"] = "triton"
    """The tri-plane field: one fused Triton kernel (lookup + decoder MLP, float32 math with TF32 matrix products;
    CUDA, or CPU under TRITON_INTERPRET=1) or torch ops (channels-last gathers + the decoder under autocast)."""
    cuda_graph: bool = True
    """Capture the whole step as one CUDA graph and replay it (CUDA only). Needs compile: the eager predictor
    builds its resampling filter on the host, which a capture does not allow; if a capture fails anyway the step
    runs uncaptured, with a warning."""

    @classmethod
    def for_device(cls, device: torch.device) -> FastRenderConfig:
        """All optimisations on CUDA; on CPU the reference maths (fp32, eager, no graph)."""
        if device.type == "cuda":
            return cls(field="triton" if importlib.util.find_spec("triton") is not None else "torch")
        return cls(precision="32-true", channels_last=False, compile_mode="none", field="torch", cuda_graph=False)


def sample_triplane_channels_last(planes: Float[Tensor, "batch 3 height width channels"],
                                  points: Float[Tensor, "batch points 3"], box_warp: float = 1.0
                                  ) -> Float[Tensor, "batch points channels"]:
    """`fields.triplane.sample_triplane` on channels-last planes: mean over the 3 planes of the bilinear
    (align_corners=False, zero padding) features, by gathering the 4 corner texels of each plane.

    Coordinates and weights are float32 (or wider), the sum is float32 (or wider); the output has the planes' dtype.
    """
    batch, num_planes, height, width, channels = planes.shape
    scaled = points.to(torch.promote_types(points.dtype, torch.float32)) * (2.0 / box_warp)  # [B, N, 3]
    u = torch.stack([scaled[..., u_axis] for u_axis, _ in PLANE_AXES], dim=1)  # [B, 3, N]
    v = torch.stack([scaled[..., v_axis] for _, v_axis in PLANE_AXES], dim=1)
    x = ((u + 1) * width - 1) / 2  # texel units: texel j's centre is at x = j
    y = ((v + 1) * height - 1) / 2
    x0, y0 = torch.floor(x), torch.floor(y)
    first_texel = torch.arange(batch * num_planes, device=planes.device).reshape(batch, num_planes, 1)
    first_texel = first_texel * (height * width)  # [B, 3, 1]: row of texel (0, 0) of each plane in `flat`
    flat = planes.reshape(batch * num_planes * height * width, channels)  # [B·3·H·W, C]
    total = None
    for x_index, x_weight in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
        for y_index, y_weight in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
            inside = (x_index >= 0) & (x_index < width) & (y_index >= 0) & (y_index < height)
            texel = first_texel + (y_index.clamp(0, height - 1) * width + x_index.clamp(0, width - 1)).long()
            weight = torch.where(inside, x_weight * y_weight, 0.0)  # [B, 3, N]
            term = flat[texel] * weight[..., None]  # [B, 3, N, C]
            total = term if total is None else total + term
    return (total.sum(dim=1) / num_planes).to(planes.dtype)  # [B, N, C]


def field_features_channels_last(planes: Float[Tensor, "batch 3 height width sampled_channels"],
                                 points: Float[Tensor, "batch points 3"], box_warp: float, confined: Sequence[float]
                                 ) -> Float[Tensor, "batch points channels"]:
    """The decoder's input from channels-last planes: `sample_triplane_channels_last`, and for `confined`
    (`fields.triplane.Confinement.arguments`) its second channel set weighted by each point's box weight, on the
    confined planes only (`fields.triplane.TriplaneField.sample`, by the full lookup of both sets)."""
    if not confined:
        return sample_triplane_channels_last(planes, points, box_warp)
    confinement = Confinement.from_arguments(confined)
    planes = without_unconfined_sets(planes, confinement, channel_dim=-1)
    return confine_to_box(sample_triplane_channels_last(planes, points, box_warp), points, confinement)


def triplane_field_reference(planes: Float[Tensor, "batch 3 height width channels"],
                             points: Float[Tensor, "batch points 3"], weight1: Float[Tensor, "hidden channels"],
                             bias1: Float[Tensor, " hidden"], weight2: Float[Tensor, "out1 hidden"],
                             bias2: Float[Tensor, " out1"], box_warp: float, confined: Sequence[float] = (),
                             added: Float[Tensor, "batch points channels"] | None = None
                             ) -> tuple[Float[Tensor, "batch points out"], Float[Tensor, "batch points 1"]]:
    """The fused field's maths in torch, float32 or wider: the lookup, then the OSG decoder (Linear → Softplus →
    Linear; features sigmoid·1.002 − 0.001, raw density) with `fields.triplane.OSGDecoder`'s weights. `confined`:
    `fields.triplane.Confinement.arguments` (the planes carry 2C channels, the second C confined to a box) or empty
    (C channels). `added`: decoder input added to the lookup's (`fields.triplane.TriplaneField.forward`: the
    torso's features)."""
    dtype = torch.promote_types(points.dtype, torch.float32)
    sampled = field_features_channels_last(planes.to(dtype), points.to(dtype), box_warp, confined)  # [B, N, C]
    if added is not None:
        sampled = sampled + added.to(dtype)
    hidden = F.softplus(F.linear(sampled, weight1.to(dtype), bias1.to(dtype)))
    output = F.linear(hidden, weight2.to(dtype), bias2.to(dtype))  # [B, N, 1 + out]
    return torch.sigmoid(output[..., 1:]) * (1 + 2 * 0.001) - 0.001, output[..., :1]


def _importance_depths(depths: Float[Tensor, "batch rays samples 1"], weights: Float[Tensor, "batch rays intervals 1"],
                       uniforms: Float[Tensor, "batch rays num"]) -> Float[Tensor, "batch rays num 1"]:
    """`render.volume.sample_importance` with its uniforms given."""
    batch, rays, samples, _ = depths.shape
    depths_flat = depths.reshape(batch * rays, samples)  # [N, S]
    weights_flat = weights.reshape(batch * rays, samples - 1).to(depths.dtype)  # [N, S − 1]
    midpoints = 0.5 * (depths_flat[:, :-1] + depths_flat[:, 1:])  # [N, S − 1]
    smoothed = _smoothed_weights(weights_flat)[:, 1:-1]  # [N, S − 3]
    fine = _inverse_cdf(midpoints, smoothed, uniforms.reshape(batch * rays, -1))  # [N, num]
    return fine.reshape(batch, rays, -1, 1)


def render_rays_given_uniforms(field_fn: FieldFn, origins: Float[Tensor, "batch rays 3"],
                               directions: Float[Tensor, "batch rays 3"], config: VolumeRenderConfig,
                               offsets: Float[Tensor, "batch rays coarse 1"],
                               uniforms: Float[Tensor, "batch rays fine"]) -> Composited:
    """`render.volume.render_rays` with its random numbers given: `offsets` place the stratified samples in their
    bins and `uniforms` drive the inverse-CDF importance sampler (`RayUniforms` draws them as the reference does)."""
    num_coarse = config.num_coarse
    starts = torch.linspace(config.near, config.far, num_coarse, dtype=offsets.dtype, device=offsets.device)
    depths_coarse = starts[:, None] + offsets * ((config.far - config.near) / (num_coarse - 1))  # [B, R, S_c, 1]
    colors_coarse, densities_coarse = _query(field_fn, origins, directions, depths_coarse)
    coarse = composite(colors_coarse, densities_coarse, depths_coarse, config.density_bias)
    if config.num_importance == 0:
        return coarse
    depths_fine = _importance_depths(depths_coarse, coarse.weights, uniforms)  # [B, R, S_f, 1]
    colors_fine, densities_fine = _query(field_fn, origins, directions, depths_fine)
    return composite_merged((colors_coarse, colors_fine), (densities_coarse, densities_fine),
                            (depths_coarse, depths_fine), config.density_bias)


def composite_merged(colors: Sequence[Float[Tensor, "batch rays _ channels"]],
                     densities: Sequence[Float[Tensor, "batch rays _ 1"]],
                     depths: Sequence[Float[Tensor, "batch rays _ 1"]], density_bias: float) -> Composited:
    """`render.volume.composite` of sample sets merged by depth (the coarse and the fine samples), without moving
    their C feature channels into depth order: only the densities and depths are sorted. The midpoint rule gives the
    j-th sample in depth order half the weight of each interval it bounds, (w_{j−1} + w_j) / 2; those weights go
    back to the samples' own places and each set's features are summed where they lie. Gathering [B, R, S, C]
    features by the sort order took 0.93 ms of a 3.7 ms step at 256² (docs/performance.md)."""
    depths_all, order = torch.sort(torch.cat(tuple(depths), dim=-2), dim=-2)  # [B, R, S, 1]
    densities_all = torch.cat(tuple(densities), dim=-2).gather(-2, order)
    scalars = composite(depths_all, densities_all, depths_all, density_bias)  # its features are not used
    weights = scalars.weights  # [B, R, S − 1, 1]
    per_sample = (F.pad(weights, (0, 0, 1, 0)) + F.pad(weights, (0, 0, 0, 1))) / 2  # [B, R, S, 1], depth order
    in_place = torch.empty_like(per_sample).scatter_(-2, order, per_sample)  # the samples' own order
    features = sum((part * colors_part).sum(dim=-2) for part, colors_part
                   in zip(in_place.split([c.shape[-2] for c in colors], dim=-2), colors))
    return scalars._replace(features=features)


@dataclass(frozen=True)
class RayUniforms:
    """Draws the render's random numbers exactly as `render.volume.render_rays` does inside the reference's chunk
    loop: per chunk of `ray_chunk` rays, rand[B, chunk, S_c, 1] for the stratified jitter, then rand[B·chunk, S_f]
    for the importance sampler (without jitter: bin midpoints and the fixed quantiles (k + ½)/S_f)."""

    volume: VolumeRenderConfig
    num_rays: int
    ray_chunk: int

    def draw(self, count: int, generator: torch.Generator, device: torch.device
             ) -> tuple[Float[Tensor, "count rays coarse 1"], Float[Tensor, "count rays fine"]]:
        volume, fine = self.volume, self.volume.num_importance
        if not volume.jitter:
            quantiles = (torch.arange(fine, dtype=torch.float32, device=device) + 0.5) / max(fine, 1)
            return (torch.full((count, self.num_rays, volume.num_coarse, 1), 0.5, device=device),
                    quantiles.expand(count, self.num_rays, fine))
        offsets, uniforms = [], []
        for start in range(0, self.num_rays, self.ray_chunk):
            rays = min(self.ray_chunk, self.num_rays - start)
            offsets.append(torch.rand(count, rays, volume.num_coarse, 1, device=device, generator=generator))
            if fine > 0:
                uniforms.append(torch.rand(count * rays, fine, device=device, generator=generator
                                           ).reshape(count, rays, fine))
        if fine == 0:
            return torch.cat(offsets, dim=1), torch.zeros(count, self.num_rays, 0, device=device)
        return torch.cat(offsets, dim=1), torch.cat(uniforms, dim=1)


def _warp_inputs(plate_warp: Float[Tensor, "count 2 3"] | None, count: int, device: torch.device
                 ) -> tuple[Float[Tensor, "count 2 3"], Float[Tensor, " count"]]:
    """(warps, flags) of a batch: its frames' plate warps and 1, or, without warps, identities (invertible; the step
    discards what they give) and 0, for the plate's plane."""
    if plate_warp is None:
        return torch.eye(2, 3, device=device).expand(count, 2, 3), torch.zeros(count, device=device)
    return plate_warp, torch.ones(count, device=device)


def _pad(tensor: Tensor, size: int) -> Tensor:
    """Repeat the last row up to `size` rows (static shapes for a last partial batch)."""
    missing = size - tensor.shape[0]
    return tensor if missing == 0 else torch.cat((tensor, tensor[-1:].expand(missing, *tensor.shape[1:])))


class FastRenderer:
    """Renders `model` in static batches of `batch_size` frames. It keeps a private eval-mode copy of the model
    (later changes to `model` are not seen) and compiles / captures the step on construction."""

    def __init__(self, model: TriplaneTalker, batch_size: int, config: FastRenderConfig | None = None) -> None:
        self.device = model.identity_planes.device
        self.config = config or FastRenderConfig.for_device(self.device)
        if self.config.cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph needs a CUDA model")
        if self.config.cuda_graph and self.config.compile_mode == "none":
            raise ValueError("cuda_graph needs compile_mode other than 'none' (see FastRenderConfig.cuda_graph)")
        self.batch_size = batch_size
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        if self.config.channels_last:
            self.model.superres.to(memory_format=torch.channels_last)
        model_config = self.model.config
        size, render = model_config.output_resolution, model_config.render_resolution
        with torch.no_grad():
            self.encoded = self.model.encode_identity()
            intrinsics = intrinsics_from_focal(DEFAULT_FOCAL, size, size, device=self.device)
            self.intrinsics = intrinsics  # [1, 3, 3], for the plate (`TriplaneTalker.plate_coordinates`)
            camera = Cameras(torch.eye(4, device=self.device)[None], intrinsics, size, size)
            self.camera_directions = pixel_rays(camera, render, render)[1][0]  # [R, 3]: unit, camera frame
        self.uniforms = RayUniforms(model_config.volume.sampling(training=False), render * render,
                                    model_config.ray_chunk)  # fixed samples unless `jitter_at_inference`
        self.plane_dtype = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16,
                            "16-mixed": torch.float16}[self.config.precision]
        torso_dtype = torch.float32 if self.config.field == "triton" else self.plane_dtype  # the Triton lookup's
        self.torso_planes = None if self.model.config.torso_follow is None else (
            self.model.torso_planes.permute(0, 2, 3, 1)[None].to(torso_dtype).contiguous())
        """The torso's planes [1, 3, H, W, C] (`TriplaneTalkerConfig.torso_follow`), or None."""
        confined = self.model.field.confined
        self.confined = [] if confined is None else confined.arguments
        """The Triton field's `confined` argument: `Confinement.arguments` of the mouth planes, or empty."""
        if self.config.field == "triton":
            import deltaplane.fields.triplane_triton  # noqa: F401 -- registers torch.ops.deltaplane.triplane_lookup
            import deltaplane.triton_field  # noqa: F401 -- registers torch.ops.deltaplane.triplane_field
        stages = (self._planes, self._features, self._superres)
        if self.config.compile_mode != "none":
            stages = tuple(torch.compile(stage, mode=self.config.compile_mode, dynamic=False) for stage in stages)
        self.stages = stages
        """(planes, volume, super-resolution) stage callables, compiled unless compile_mode is "none"."""
        self._graph: torch.cuda.CUDAGraph | None = None
        if self.config.compile_mode != "none":
            self._warm_up()

    def _planes(self, audio_codes: Float[Tensor, "batch code"], eye: Float[Tensor, " batch"],
                angles: Float[Tensor, "batch 3"], landmarks: Float[Tensor, "batch landmark_inputs"]
                ) -> Float[Tensor, "batch 3 height width channels"]:
        """Condition tokens → identity + deltaplane, channels-last, in the sampling dtype."""
        with autocast(self.config.precision, self.device):
            tokens = self.model.condition_encoder(audio_codes, eye, angles, landmarks)
            planes, _ = self.model.planes(tokens, encoded_identity=self.encoded)  # [B, 3, C, H, W]
        return planes.permute(0, 1, 3, 4, 2).to(self.plane_dtype).contiguous()  # [B, 3, H, W, C]

    def _plate(self, cam2world: Float[Tensor, "batch 4 4"], plate_warp: Float[Tensor, "batch 2 3"],
               warped: Float[Tensor, " batch"], size: int) -> Float[Tensor, "batch 3 size size"]:
        """`TriplaneTalker.plate_image` at size², through `plate_warp` where `warped` is 1, else through the plane.
        Both placements are computed (a few elementwise ops per pixel): no branch on the inputs, so one static
        graph serves both."""
        output_size = self.model.config.output_resolution
        cameras = Cameras(cam2world, self.intrinsics.expand(cam2world.shape[0], 3, 3), output_size, output_size)
        cameras = cameras.resized(size, size)
        coordinates = torch.where(warped[:, None, None] > 0, self.model.plate_coordinates(cameras, plate_warp),
                                  self.model.plate_coordinates(cameras))  # [B, R, 2]
        return self.model.plate_samples(coordinates, size)

    def _torso_features(self, points: Float[Tensor, "batch points 3"], torso: Float[Tensor, "batch 4 4"]
                        ) -> Float[Tensor, "batch points channels"] | None:
        """The torso's decoder input at the world points (`TriplaneTalker._field`), float32; None without a torso."""
        if self.torso_planes is None:
            return None
        # one plane set for every frame: the batch's points, in the torso's frame, as one frame's
        moved = transform_points(torso, points).reshape(1, -1, 3)
        box_warp = self.model.field.box_warp
        if self.config.field == "triton":  # `fields.triplane_triton`'s lookup kernel
            added = torch.ops.deltaplane.triplane_lookup(self.torso_planes, moved.float().contiguous(), box_warp,
                                                         [0, 1, 2])
        else:
            added = sample_triplane_channels_last(self.torso_planes, moved, box_warp)
        return added.reshape(*points.shape[:2], -1).float()

    def _features(self, planes: Float[Tensor, "batch 3 height width channels"], cam2world: Float[Tensor, "batch 4 4"],
                  plate_warp: Float[Tensor, "batch 2 3"], warped: Float[Tensor, " batch"],
                  offsets: Float[Tensor, "batch rays coarse 1"], uniforms: Float[Tensor, "batch rays fine"],
                  torso: Float[Tensor, "batch 4 4"]
                  ) -> tuple[Float[Tensor, "batch channels size size"], Float[Tensor, "batch 1 size size"],
                             Float[Tensor, "batch 1 size size"]]:
        """Volume rendering: (feature image in [-1, 1], over the plate in plate mode; depth; opacity) at the
        rendering resolution. `torso`: the frames' `TriplaneTalker.torso_transforms` (unused without a torso)."""
        batch, size = planes.shape[0], self.model.config.render_resolution
        directions = F.normalize(rows_times(self.camera_directions, cam2world[:, :3, :3].transpose(-1, -2)),
                                 dim=-1)  # [B, R, 3]
        origins = cam2world[:, None, :3, 3].expand_as(directions)  # [B, R, 3]

        def field_fn(points: Float[Tensor, "batch points 3"]) -> tuple[Tensor, Tensor]:
            box_warp, mlp = self.model.field.box_warp, self.model.field.decoder.net
            added = self._torso_features(points, torso)
            if self.config.field == "triton":
                decoded, density = torch.ops.deltaplane.triplane_field(planes, points, mlp[0].weight, mlp[0].bias,
                                                                       mlp[2].weight, mlp[2].bias, box_warp,
                                                                       self.confined, added)
            else:
                features = field_features_channels_last(planes, points, box_warp, self.confined)
                if added is not None:
                    features = features + added.to(features.dtype)
                with autocast(self.config.precision, self.device):
                    decoded, density = self.model.field.decoder(features)
                decoded, density = decoded.float(), density.float()
            if self.model.field.empty_outside:
                density = empty_outside_box(points, density, box_warp)
            return decoded, density

        result = render_rays_given_uniforms(field_fn, origins, directions, self.uniforms.volume, offsets, uniforms)
        feature_image = (result.features * 2.0 - 1.0).reshape(batch, size, size, -1).permute(0, 3, 1, 2)  # EG3D ×2 − 1
        alpha = result.accumulation.reshape(batch, 1, size, size)
        if self.model.config.uses_plate:
            feature_image = over_plate(feature_image, alpha, self._plate(cam2world, plate_warp, warped, size))
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        return feature_image.contiguous(memory_format=memory_format), result.depth.reshape(batch, 1, size, size), alpha

    def _superres(self, feature_image: Float[Tensor, "batch channels size size"],
                  alpha: Float[Tensor, "batch 1 size size"], cam2world: Float[Tensor, "batch 4 4"],
                  plate_warp: Float[Tensor, "batch 2 3"], warped: Float[Tensor, " batch"]
                  ) -> Float[Tensor, "batch 3 out out"]:
        with autocast(self.config.precision, self.device):
            rgb = self.model.superres(feature_image[:, :3], feature_image)
        if self.model.config.uses_plate:
            plate = self._plate(cam2world, plate_warp, warped, self.model.config.output_resolution)
            return blend_plate(rgb, alpha, plate)
        return rgb.float()

    def _step(self, *inputs: Tensor) -> tuple[Float[Tensor, "batch 3 out out"], Float[Tensor, "batch 1 size size"]]:
        """(audio codes, eye, angles, landmarks, cam2world, plate warps, warped flags, offsets, uniforms, torso
        transforms) of a full batch → (rgb, depth)."""
        planes_stage, features_stage, superres_stage = self.stages
        planes = planes_stage(*inputs[:4])
        feature_image, depth, alpha = features_stage(planes, *inputs[4:])
        return superres_stage(feature_image, alpha, *inputs[4:7]), depth

    def example_inputs(self) -> list[Tensor]:
        """A full batch of plausible inputs (random conditions, orbit cameras, plate warps near the identity, half
        of them used) for compilation and capture."""
        generator = torch.Generator(device=self.device).manual_seed(0)
        count, code_dim = self.batch_size, self.model.config.audio.code_dim
        yaw = torch.linspace(-0.3, 0.3, count, device=self.device)
        conditions = (torch.randn(count, code_dim, device=self.device, generator=generator),
                      0.2 + 0.1 * torch.rand(count, device=self.device, generator=generator),
                      0.2 * torch.rand(count, 3, device=self.device, generator=generator) - 0.1,
                      2 * torch.rand(count, self.model.config.conditions.landmark_inputs, device=self.device,
                                     generator=generator) - 1)
        warps = torch.eye(2, 3, device=self.device) + 0.02 * torch.randn(count, 2, 3, device=self.device,
                                                                         generator=generator)
        warped = (torch.arange(count, device=self.device) % 2).float()
        return [*conditions, orbit_cam2world(yaw, -0.5 * yaw), warps, warped,
                *self.uniforms.draw(count, generator, self.device), self._torso_transforms(conditions[2])]

    @torch.no_grad()
    def _warm_up(self) -> None:
        """Compile (two calls: the second one must not recompile), then capture the CUDA graph if asked."""
        # the graph's static inputs must own their memory: fixed samples are drawn as expanded views, which
        # `copy_` cannot write into
        inputs = [tensor.clone(memory_format=torch.contiguous_format) for tensor in self.example_inputs()]
        if not self.config.cuda_graph:
            for _ in range(2):
                self._step(*inputs)
            return
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._step(*inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                outputs = self._step(*inputs)
        except RuntimeError as error:
            warnings.warn(f"CUDA graph capture failed; the step runs uncaptured: {error}", stacklevel=2)
            return
        self._graph, self._static_inputs, self._static_outputs = graph, inputs, outputs

    def _torso_transforms(self, angles: Float[Tensor, "count 3"]) -> Float[Tensor, "count 4 4"]:
        """`TriplaneTalker.torso_transforms`, computed outside the step (a matrix inverse per frame); identities,
        which the step does not use, without a torso."""
        torso = self.model.torso_transforms(angles.to(self.device, torch.float32))
        return torch.eye(4, device=self.device).repeat(angles.shape[0], 1, 1) if torso is None else torso

    @property
    def captured(self) -> bool:
        """Whether the step replays a CUDA graph."""
        return self._graph is not None

    @torch.no_grad()
    def render_batch(self, audio_codes: Float[Tensor, "count code"], eye: Float[Tensor, " count"],
                     angles: Float[Tensor, "count 3"], landmarks: Float[Tensor, "count landmark_inputs"],
                     cam2world: Float[Tensor, "count 4 4"], generator: torch.Generator,
                     plate_warp: Float[Tensor, "count 2 3"] | None = None
                     ) -> tuple[Float[Tensor, "count 3 out out"], Float[Tensor, "count 1 size size"]]:
        """Up to `batch_size` frames: (rgb in [-1, 1], depth); random numbers drawn from `generator`; `plate_warp`
        as in `inference.render_clip`."""
        count = cam2world.shape[0]
        if not 1 <= count <= self.batch_size:
            raise ValueError(f"a batch holds 1 to {self.batch_size} frames, got {count}")
        offsets, uniforms = self.uniforms.draw(count, generator, self.device)
        warps, warped = _warp_inputs(plate_warp, count, self.device)
        torso = self._torso_transforms(angles)
        inputs = [_pad(tensor.to(self.device, torch.float32), self.batch_size) for tensor in
                  (audio_codes, eye, angles, landmarks, cam2world, warps, warped, offsets, uniforms, torso)]
        if self._graph is None:
            rgb, depth = self._step(*inputs)
        else:
            for static, value in zip(self._static_inputs, inputs):
                static.copy_(value)
            self._graph.replay()
            rgb, depth = (output.clone() for output in self._static_outputs)  # the next replay overwrites them
        return rgb[:count], depth[:count]

    @torch.no_grad()
    def render_clip(self, conditions: Conditions, cam2world: Float[Tensor, "frames 4 4"], lip_smoothing: float = 0.0,
                    seed: int = 0, plate_warp: Float[Tensor, "frames 2 3"] | None = None
                    ) -> Iterator[tuple[Float[Tensor, "3 H W"], Float[Tensor, "1 h w"]]]:
        """`inference.render_clip` (same audio codes, same random numbers) at this renderer's batch size."""
        num_frames = cam2world.shape[0]
        audio_codes = self.model.clip_audio_codes(conditions.audio)  # float32, as the reference
        if lip_smoothing > 0:
            audio_codes = ema_smooth(audio_codes, alpha=lip_smoothing)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        for start in range(0, num_frames, self.batch_size):
            part = slice(start, min(start + self.batch_size, num_frames))
            rgb, depth = self.render_batch(audio_codes[part], conditions.eye[part], conditions.angles[part],
                                           conditions.landmarks[part], cam2world[part], generator,
                                           None if plate_warp is None else plate_warp[part])
            for index in range(rgb.shape[0]):
                yield rgb[index], depth[index]
