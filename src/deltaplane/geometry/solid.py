"""Points inside the body behind a rendered surface (pure torch, no learning; docs/novel-views.md "A solid head").

The video sees every surface of the person from near the front only, so nothing tells the field that a head or a
torso is a solid body: it puts density where the frontal rays stop and nowhere behind. From ±30° yaw the rays beside
the face then run past that relief onto the backdrop (run 10). These are the points, a little behind the rendered
surface of the person's opaque pixels, where a solid body has matter; `TriplaneTalker.solid_term` asks the field
for density there. Frontal renders do not change: behind an opaque surface nothing is seen.

Farther back, beyond the body's depth, a real person has nothing until the backdrop; the field, unseen there, leaves
matter shaped like the person's silhouette, which side views show beside the head (run 12). `empty_points` are the
points where `TriplaneTalker.behind_term` asks for no density.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass(frozen=True)
class SolidConfig:
    """Where the solid-body term (`LossWeights.solid`) asks for density."""

    rays: int = 1024
    """Rays per frame, drawn at random among the person's opaque pixels at the rendering resolution."""
    margin: float = 0.05
    """Distance behind the rendered surface where the body starts (world units): the surface itself is left to
    the photometric terms."""
    thickness: float = 0.25
    """Distance behind the rendered surface to which the body is solid (world units: the head box is 1 deep and a
    face sits about 0.2 in front of the head's centre; the backdrop is pushed behind depth 3.1, 0.5 behind a face)."""
    body_depth: float = 0.5
    """Distance behind the rendered surface beyond which the person has no matter (world units; a face sits about
    0.2 in front of the head's centre, so the back of the head is about 0.4–0.5 behind it). The empty-behind term
    (`LossWeights.behind`) asks for no density from here to the backdrop (plate mode: to the far end of the rays;
    whole-frame mode: to `TriplaneTalkerConfig.background_depth`, where the field's backdrop starts)."""
    round_radius: float = 0.0
    """0: the body is `thickness` deep behind every opaque pixel. Otherwise the body is round near its outline, as a
    head or a shoulder is: a ray entering it d inside the person's silhouette (world units at the surface) crosses
    the chord 2√(d(2R − d)) of a circle of this radius R (`round_depth`), and the body behind that pixel is the
    chord, at most `thickness` (and at most `body_depth` for the empty-behind term). A body as deep behind its
    outline as behind its middle is a slab that side views show beside the head (docs/novel-views.md "Run 26")."""
    skip_mouth: bool = False
    """Leave the mouth box's rays out: matter filled in behind closed lips, coloured like them, is what an opening
    mouth must then carve away (the renderer drew less of the tracked opening once the term was on, run 11)."""

    def __post_init__(self) -> None:
        if self.rays < 1 or not 0 <= self.margin < self.thickness <= self.body_depth or self.round_radius < 0:
            raise ValueError(f"SolidConfig needs rays ≥ 1, 0 ≤ margin < thickness ≤ body_depth and round_radius ≥ 0, "
                             f"got {self}")

    def round_band(self, depth: float) -> float:
        """How far inside the outline (world units) the round body's chord reaches `depth`: farther in, a body
        `depth` deep is the same round or flat (0 when not round)."""
        radius = self.round_radius
        if radius == 0:
            return 0.0
        return radius - math.sqrt(max(radius**2 - (depth / 2) ** 2, 0.0))


def round_depth(inset: Float[Tensor, "*rays"], radius: float) -> Float[Tensor, "*rays"]:
    """The depth a ray crosses of a round body of `radius` (world units), entering it `inset` inside its outline:
    the chord 2√(d(2R − d)) of the circle, 2R from d = R on."""
    inset = inset.clamp(0.0, radius)
    return 2.0 * torch.sqrt(inset * (2.0 * radius - inset))


def outline_distance(mask: Bool[Tensor, "batch height width"], limit: int) -> Float[Tensor, "batch height width"]:
    """Distance in pixels from each pixel of `mask` to the nearest pixel outside it (chessboard metric, pixel
    centre to the outline's edge: 0.5 next to it), 0 outside, at most `limit` − 0.5. The image's border is not an
    outline: a torso cut by the frame goes on beyond it."""
    inside = mask[:, None].float()
    count = torch.zeros_like(inside)
    for _ in range(limit):
        count += inside
        inside = -F.max_pool2d(-inside, 3, stride=1, padding=1)  # erosion; the padding never wins the max
    return (count[:, 0] - 0.5).clamp_min(0.0)


def choose_rays(mask: Bool[Tensor, "batch rays"], uniform: Float[Tensor, "batch rays"], count: int
                ) -> tuple[Int[Tensor, "batch count"], Bool[Tensor, "batch count"]]:
    """`count` distinct rays per row, at random among the masked ones (`uniform`: one U(0, 1) number per ray), and
    whether each chosen ray is masked (False where a row has fewer than `count` masked rays)."""
    chosen = torch.where(mask, uniform + 1.0, uniform).topk(count, dim=1).indices
    return chosen, mask.gather(1, chosen)


def points_behind(origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
                  depth: Float[Tensor, "batch rays"], chosen: Int[Tensor, "batch count"],
                  uniform: Float[Tensor, "batch count"], start: float | Float[Tensor, "batch count"],
                  stop: float | Float[Tensor, "batch count"]) -> Float[Tensor, "batch count 3"]:
    """One point on each chosen ray, at a distance along it (unit `directions`) uniform in
    [depth + start, depth + stop] (`uniform`: U(0, 1) per point)."""
    index = chosen[..., None].expand(-1, -1, 3)
    distance = depth.gather(1, chosen) + start + uniform * (stop - start)
    return origins.gather(1, index) + distance[..., None] * directions.gather(1, index)


def interior_points(origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
                    depth: Float[Tensor, "batch rays"], chosen: Int[Tensor, "batch count"],
                    uniform: Float[Tensor, "batch count"], config: SolidConfig,
                    body: Float[Tensor, "batch count"] | None = None
                    ) -> tuple[Float[Tensor, "batch count 3"], Bool[Tensor, "batch count"]]:
    """Points inside the body: uniform in [depth + margin, depth + thickness] on each chosen ray, or up to the
    body's depth behind it where `body` (world units, `round_depth`) is shallower; and whether the body reaches
    past the margin there (False near a round body's outline)."""
    if body is None:
        return (points_behind(origins, directions, depth, chosen, uniform, config.margin, config.thickness),
                torch.ones_like(chosen, dtype=torch.bool))
    stop = body.clamp(config.margin, config.thickness)
    return points_behind(origins, directions, depth, chosen, uniform, config.margin, stop), body > config.margin


def empty_points(origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
                 depth: Float[Tensor, "batch rays"], chosen: Int[Tensor, "batch count"],
                 uniform: Float[Tensor, "batch count"], config: SolidConfig, limit: float,
                 body: Float[Tensor, "batch count"] | None = None
                 ) -> tuple[Float[Tensor, "batch count 3"], Bool[Tensor, "batch count"]]:
    """Points behind the body, where nothing is: uniform in [depth + body_depth, limit] on each chosen ray (`limit`:
    a distance along the ray, where the backdrop starts), and whether that stretch exists (False where the surface
    lies within `body_depth` of `limit`). Where `body` (world units, `round_depth`) is shallower, the stretch starts
    at the body's depth behind the surface, at least `margin`."""
    start = config.body_depth if body is None else body.clamp(config.margin, config.body_depth)
    stop = limit - depth.gather(1, chosen)
    points = points_behind(origins, directions, depth, chosen, uniform, start, stop.clamp_min(start))
    return points, stop > start
