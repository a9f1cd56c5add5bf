"""Tri-plane sampling and EG3D's OSG decoder: planes [B, 3, C, H, W] + world points → (features, raw density).

Plane axes (docs/conventions.md, the corrected EG3D variant of NVlabs/eg3d#67): plane 0 = (x, y), plane 1 = (x, z),
plane 2 = (z, y); plane k is sampled at (u, v) = those two coordinates, u along the width (last) axis and v along
the height axis of `grid_sample`. Points are scaled by 2/box_warp (the box [-box_warp/2, box_warp/2]³ maps onto
[-1, 1]), sampled bilinearly with zero padding and align_corners=False, and the three planes' features are
averaged. `sample_triplane_reference` is a slow gather-based version of `sample_triplane` for tests.

Outside the box the zero padding leaves a point one plane's features at most (beyond x, only plane 2's): the
decoder turns them into matter shaped like that plane's silhouette, extruded out of the box, where no near-frontal
training ray looks and a side camera does (the ghost beside the head, docs/novel-views.md "Where the ghost is").
`empty_outside_box` removes it.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

PLANE_AXES = ((0, 1), (0, 2), (2, 1))
"""World axes (u, v) of planes 0, 1, 2: (x, y), (x, z), (z, y)."""
OUTSIDE_DENSITY = -1e4
"""Raw density of the points outside the box under `empty_outside_box`: its softplus is exactly 0 in float32 and
bfloat16, whatever the density bias."""


def empty_outside_box(points: Float[Tensor, "batch points 3"], density: Float[Tensor, "batch points 1"],
                      box_warp: float) -> Float[Tensor, "batch points 1"]:
    """Raw `density` with every point outside the box [−box_warp/2, box_warp/2]³ set to `OUTSIDE_DENSITY` (no
    gradient reaches the field from those points)."""
    inside = (points.abs() <= box_warp / 2).all(dim=-1, keepdim=True)
    return torch.where(inside, density, density.new_full((), OUTSIDE_DENSITY))


def _plane_coordinates(points: Float[Tensor, "batch points 3"], box_warp: float,
                       plane_ids: Sequence[int] = (0, 1, 2)) -> Float[Tensor, "batch planes points 2"]:
    """Normalised (u, v) of every point on each of the planes `plane_ids`."""
    scaled = points * (2.0 / box_warp)
    return torch.stack([scaled[..., list(PLANE_AXES[plane])] for plane in plane_ids], dim=1)  # [B, P, N, 2]


def sample_triplane(planes: Float[Tensor, "batch planes channels height width"],
                    points: Float[Tensor, "batch points 3"], box_warp: float = 1.0,
                    plane_ids: Sequence[int] = (0, 1, 2)) -> Float[Tensor, "batch points channels"]:
    """Mean over the three planes of the bilinearly sampled features at each point (float32 or wider). `planes`
    holds the planes `plane_ids` (`PLANE_AXES` indices, one each); a plane left out counts as zero in the mean.
    On CUDA, float32 points that need no gradient go through the Triton lookup (`fields.triplane_triton`, several
    times faster in training), everything else through `grid_sample` (`sample_triplane_grid`)."""
    batch, num_planes, channels, height, width = planes.shape
    if num_planes != len(plane_ids):
        raise ValueError(f"{num_planes} planes given for plane ids {tuple(plane_ids)}")
    dtype = torch.promote_types(torch.promote_types(planes.dtype, points.dtype), torch.float32)
    if planes.is_cuda and dtype == torch.float32 and not points.requires_grad and _has_triton():
        from deltaplane.fields.triplane_triton import triplane_lookup

        channels_last = planes.to(dtype).permute(0, 1, 3, 4, 2).contiguous()  # [B, P, H, W, C]
        return triplane_lookup(channels_last, points.to(dtype).contiguous(), box_warp, list(plane_ids))
    return sample_triplane_grid(planes, points, box_warp, plane_ids)


def sample_triplane_grid(planes: Float[Tensor, "batch planes channels height width"],
                         points: Float[Tensor, "batch points 3"], box_warp: float = 1.0,
                         plane_ids: Sequence[int] = (0, 1, 2)) -> Float[Tensor, "batch points channels"]:
    """`sample_triplane` through `grid_sample`: any device and dtype, and a gradient for the points too."""
    batch, num_planes, channels, height, width = planes.shape
    dtype = torch.promote_types(torch.promote_types(planes.dtype, points.dtype), torch.float32)
    grid = _plane_coordinates(points.to(dtype), box_warp, plane_ids)  # [B, P, N, 2]
    grid = grid.reshape(batch * num_planes, 1, -1, 2)  # [B·P, 1, N, 2]
    flat_planes = planes.to(dtype).reshape(batch * num_planes, channels, height, width)  # [B·P, C, H, W]
    sampled = F.grid_sample(flat_planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(batch, num_planes, channels, -1)  # [B, P, C, N]
    return (sampled.sum(dim=1) / len(PLANE_AXES)).transpose(1, 2)  # [B, N, C]


@functools.cache
def _has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def _ramp(coordinates: Tensor, low: float, high: float, edge: float) -> Tensor:
    """1 inside [low, high], falling linearly to 0 over `edge` outside it."""
    return ((coordinates - low + edge) / edge).clamp(0, 1) * ((high + edge - coordinates) / edge).clamp(0, 1)


def box_weights(box: tuple[float, float, float, float, float, float], resolution: int, box_warp: float,
                edge: float) -> Float[Tensor, "3 1 resolution resolution"]:
    """Per-plane texel weights in [0, 1] for a world box (x0, x1, y0, y1, z0, z1): 1 where the texel centre's two
    world coordinates lie inside it, ramping linearly to 0 over `edge` outside it."""
    centres = ((torch.arange(resolution) + 0.5) / resolution * 2 - 1) * box_warp / 2  # align_corners=False
    ramps = [_ramp(centres, box[2 * axis], box[2 * axis + 1], edge) for axis in range(3)]
    return torch.stack([ramps[v][:, None] * ramps[u][None, :] for u, v in PLANE_AXES])[:, None]  # v rows, u cols


def blur_along_x(planes: Float[Tensor, "B 3 C H W"], plane: int, mask: Float[Tensor, "*frames H W"],
                 sigma: float) -> Float[Tensor, "B 3 C H W"]:
    """`planes` with plane `plane`'s features blurred along its columns (world x; planes 0 and 1) by a Gaussian of
    `sigma` texels where `mask` (weights in [0, 1]; [H, W] for every frame, or [B, 1, H, W] per frame) is 1,
    blended towards the original where it falls to 0, and the other planes as they are: thin x-periodic patterns
    (the specks in closed mouths, docs/lip-motion.md "Run 39") vanish there. Edges are replicated, so a constant
    row stays constant."""
    radius = max(1, round(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=planes.dtype, device=planes.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    chosen = planes[:, plane]
    rows = F.pad(chosen.reshape(-1, 1, chosen.shape[-1]), (radius, radius), mode="replicate")
    blurred = F.conv1d(rows, (kernel / kernel.sum()).view(1, 1, -1)).view_as(chosen)
    result = planes.clone()
    result[:, plane] = chosen + mask.to(planes.dtype) * (blurred - chosen)
    return result


def point_box_weights(points: Float[Tensor, "batch points 3"], box: tuple[float, float, float, float, float, float],
                      edge: float) -> Float[Tensor, "batch points 1"]:
    """The weight of `box_weights` at world points, in all three axes: 1 inside the box, 0 beyond `edge` of it."""
    weights = [_ramp(points[..., axis], box[2 * axis], box[2 * axis + 1], edge) for axis in range(3)]
    return (weights[0] * weights[1] * weights[2])[..., None]


@dataclass(frozen=True)
class Confinement:
    """Planes that carry two sets of C channels: the first acts everywhere, the second only inside a 3D box. A
    plane's texels act on every point that projects onto them (the whole prism of the texel along the plane's
    missing axis); each point weights the second set by its `point_box_weights`, which confines it to the box
    itself (`confine_to_box`)."""

    box: tuple[float, float, float, float, float, float]
    """(x0, x1, y0, y1, z0, z1) in world units."""
    edge: float
    """The box weight falls linearly to 0 over this distance outside the box."""
    planes: tuple[int, ...] = (0, 1, 2)
    """The planes (`PLANE_AXES` indices) whose second set counts; the others' second set is ignored, and the fast
    lookups (`TriplaneField.sample`, the Triton field) never read it."""

    def __post_init__(self) -> None:
        if not self.planes or not set(self.planes) <= {0, 1, 2} or len(set(self.planes)) != len(self.planes):
            raise ValueError(f"Confinement.planes must name distinct planes among 0, 1, 2, got {self.planes}")

    @property
    def arguments(self) -> list[float]:
        """The flat form the Triton field takes: (x0, x1, y0, y1, z0, z1, edge, *planes)."""
        return [*self.box, self.edge, *map(float, self.planes)]

    @classmethod
    def from_arguments(cls, arguments: Sequence[float]) -> Confinement:
        return cls(tuple(arguments[:6]), arguments[6], tuple(int(plane) for plane in arguments[7:]))


def confine_to_box(sampled: Float[Tensor, "batch points twice_channels"], points: Float[Tensor, "batch points 3"],
                   confinement: Confinement) -> Float[Tensor, "batch points channels"]:
    """Features of `confinement`'s planes from both channel sets sampled together (`sample_triplane` of the 2C
    channels, in which the second set of a plane that `confinement.planes` leaves out must be zero): the first set
    everywhere, the second weighted by each point's box weight."""
    channels = sampled.shape[-1] // 2
    weights = point_box_weights(points, confinement.box, confinement.edge).to(sampled.dtype)
    return sampled[..., :channels] + weights * sampled[..., channels:]


def without_unconfined_sets(planes: Float[Tensor, "batch 3 *plane"], confinement: Confinement, channel_dim: int
                            ) -> Float[Tensor, "batch 3 *plane"]:
    """`planes` with the second channel set zeroed on the planes `confinement.planes` leaves out: what
    `confine_to_box` of the full sampling needs to give `Confinement`'s meaning."""
    if len(confinement.planes) == len(PLANE_AXES):
        return planes
    keep = torch.ones(len(PLANE_AXES), 2, dtype=planes.dtype, device=planes.device)
    keep[[plane for plane in range(len(PLANE_AXES)) if plane not in confinement.planes], 1] = 0
    keep = keep.repeat_interleave(planes.shape[channel_dim] // 2, dim=1)  # [3, 2C]
    shape = [1] * planes.dim()
    shape[1], shape[channel_dim] = len(PLANE_AXES), planes.shape[channel_dim]
    return planes * keep.reshape(shape)


def support_rectangles(weights: Float[Tensor, "3 1 height width"]) -> list[tuple[int, int, int, int]]:
    """Per plane, the smallest (row0, row1, col0, col1) texel rectangle holding every non-zero weight (of
    `box_weights`: a product of per-axis ramps, so the rectangle is exactly its support; the whole plane when the
    weights are all zero)."""
    rectangles = []
    for plane in weights[:, 0] != 0:
        rows, cols = torch.nonzero(plane.any(1))[:, 0], torch.nonzero(plane.any(0))[:, 0]
        if rows.numel() == 0:
            rectangles.append((0, plane.shape[0], 0, plane.shape[1]))
        else:
            rectangles.append((int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1))
    return rectangles


def sample_triplane_reference(planes: Float[Tensor, "batch 3 channels height width"],
                              points: Float[Tensor, "batch points 3"], box_warp: float = 1.0
                              ) -> Float[Tensor, "batch points channels"]:
    """Slow reference of `sample_triplane`: explicit bilinear interpolation by gathering the four neighbours."""
    batch, num_planes, channels, height, width = planes.shape
    coordinates = _plane_coordinates(points, box_warp)  # [B, 3, N, 2]
    total = torch.zeros(batch, channels, points.shape[1], dtype=planes.dtype, device=planes.device)
    for plane_index in range(num_planes):
        flat = planes[:, plane_index].reshape(batch, channels, height * width)  # [B, C, H·W]
        # align_corners=False: u = −1 is the left edge of texel 0, texel j's centre is at u = (2j + 1)/W − 1.
        x = ((coordinates[:, plane_index, :, 0] + 1) * width - 1) / 2  # [B, N], in texel units
        y = ((coordinates[:, plane_index, :, 1] + 1) * height - 1) / 2
        x0, y0 = torch.floor(x), torch.floor(y)
        for x_index, x_weight in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            for y_index, y_weight in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                inside = (x_index >= 0) & (x_index < width) & (y_index >= 0) & (y_index < height)
                texel = (y_index.clamp(0, height - 1) * width + x_index.clamp(0, width - 1)).long()  # [B, N]
                values = flat.gather(2, texel[:, None, :].expand(-1, channels, -1))  # [B, C, N]
                total = total + values * (x_weight * y_weight * inside)[:, None, :]
    return (total / num_planes).transpose(1, 2)  # [B, N, C]


@dataclass(frozen=True)
class OSGDecoderConfig:
    """Sizes of EG3D's OSG decoder."""

    feature_channels: int = 32
    """Channels of each tri-plane (input width)."""
    hidden_channels: int = 64
    """Width of the single hidden layer."""
    output_channels: int = 32
    """Feature channels out (the first 3 are RGB); one density channel is added."""


class OSGDecoder(nn.Module):
    """EG3D's OSGDecoder: Linear → Softplus → Linear; density = out[..., 0] raw, features =
    sigmoid(out[..., 1:])·1.002 − 0.001. View directions are not used.

    EG3D uses equalised-learning-rate layers, whose stored parameters are rescaled at run time. To load an EG3D
    checkpoint (keys `decoder.net.0.*`, `decoder.net.2.*`, lr_mul = decoder_lr_mul = 1) into this module's `net.0`
    and `net.2`, copy `weight = stored_weight · lr_mul / sqrt(fan_in)` (fan_in = in_features) and
    `bias = stored_bias · lr_mul`. The init below matches EG3D's effective init: weight ~ N(0, 1/fan_in), bias 0.
    """

    def __init__(self, config: OSGDecoderConfig = OSGDecoderConfig()) -> None:
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.feature_channels, config.hidden_channels), nn.Softplus(),
                                 nn.Linear(config.hidden_channels, 1 + config.output_channels))
        for layer in (self.net[0], self.net[2]):
            nn.init.normal_(layer.weight, std=layer.in_features ** -0.5)
            nn.init.zeros_(layer.bias)

    def forward(self, features: Float[Tensor, "batch points channels"]
                ) -> tuple[Float[Tensor, "batch points out_channels"], Float[Tensor, "batch points 1"]]:
        output = self.net(features)  # [B, N, 1 + out_channels]
        density = output[..., :1]
        decoded = torch.sigmoid(output[..., 1:]) * (1 + 2 * 0.001) - 0.001
        return decoded, density


class TriplaneField(nn.Module):
    """Radiance field of a tri-plane: `sample_triplane` followed by the `OSGDecoder`. The planes are an input (the
    model owns or generates them); this module owns only the decoder."""

    def __init__(self, config: OSGDecoderConfig = OSGDecoderConfig(), box_warp: float = 1.0,
                 empty_outside: bool = False, confined: Confinement | None = None) -> None:
        super().__init__()
        self.box_warp = box_warp
        self.empty_outside = empty_outside
        """No density outside the box (`empty_outside_box`)."""
        self.confined = confined
        """The planes carry 2C channels, the second C acting only inside a box (None: C channels)."""
        self.decoder = OSGDecoder(config)

    def sample(self, planes: Float[Tensor, "batch 3 sampled_channels height width"],
               points: Float[Tensor, "batch points 3"]) -> Float[Tensor, "batch points channels"]:
        """The decoder's input at the points: `sample_triplane`, or for `confined` planes the first set on every
        plane plus the box-weighted second set on the confined planes only (reference: `confine_to_box` of the
        full 2C sampling of `without_unconfined_sets`; sampling only the planes that hold a second set saves a
        full lookup per plane left out)."""
        if self.confined is None:
            return sample_triplane(planes, points, self.box_warp)
        channels, confined = planes.shape[2] // 2, list(self.confined.planes)
        first = sample_triplane(planes[:, :, :channels], points, self.box_warp)
        # slices, not a list index: indexing with a list copies it to the device and waits
        second = torch.cat([planes[:, plane:plane + 1, channels:] for plane in confined], dim=1)
        second = sample_triplane(second, points, self.box_warp, confined)
        weights = point_box_weights(points, self.confined.box, self.confined.edge).to(second.dtype)
        return first + weights * second

    def forward(self, planes: Float[Tensor, "batch 3 channels height width"], points: Float[Tensor, "batch points 3"],
                stopped: tuple[Float[Tensor, "batch 3 channels height width"], Bool[Tensor, "batch points"]]
                | None = None, added: Float[Tensor, "batch points channels"] | None = None
                ) -> tuple[Float[Tensor, "batch points out_channels"], Float[Tensor, "batch points 1"]]:
        """(features in [-0.001, 1.001], raw density) at the world points. `stopped` = (planes S, mask): S is a
        summand of `planes` (of their first C channels when `confined`) that gets no gradient from the masked points
        (the values are unchanged). `added`: decoder input added to the planes' (another triplane's, sampled
        elsewhere: the torso's)."""
        features = self.sample(planes, points)
        if added is not None:
            features = features + added
        if stopped is not None:
            summand, mask = stopped
            sampled = sample_triplane(summand, points, self.box_warp)
            # value + 0, gradient 1 − 1 = 0 at the masked points: one extra sampling pass, no second decode
            features = features - mask[..., None] * (sampled - sampled.detach())
        decoded, density = self.decoder(features)
        if self.empty_outside:
            density = empty_outside_box(points, density, self.box_warp)
        return decoded, density
