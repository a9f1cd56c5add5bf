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

from dataclasses import dataclass

import torch
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
    skip_mouth: bool = False
    """Leave the mouth box's rays out: matter filled in behind closed lips, coloured like them, is what an opening
    mouth must then carve away (the renderer drew less of the tracked opening once the term was on, run 11)."""

    def __post_init__(self) -> None:
        if self.rays < 1 or not 0 <= self.margin < self.thickness <= self.body_depth:
            raise ValueError(f"SolidConfig needs rays ≥ 1 and 0 ≤ margin < thickness ≤ body_depth, got {self}")


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
                    uniform: Float[Tensor, "batch count"], config: SolidConfig) -> Float[Tensor, "batch count 3"]:
    """Points inside the body: uniform in [depth + margin, depth + thickness] on each chosen ray."""
    return points_behind(origins, directions, depth, chosen, uniform, config.margin, config.thickness)


def empty_points(origins: Float[Tensor, "batch rays 3"], directions: Float[Tensor, "batch rays 3"],
                 depth: Float[Tensor, "batch rays"], chosen: Int[Tensor, "batch count"],
                 uniform: Float[Tensor, "batch count"], config: SolidConfig, limit: float
                 ) -> tuple[Float[Tensor, "batch count 3"], Bool[Tensor, "batch count"]]:
    """Points behind the body, where nothing is: uniform in [depth + body_depth, limit] on each chosen ray (`limit`:
    a distance along the ray, where the backdrop starts), and whether that stretch exists (False where the surface
    lies within `body_depth` of `limit`)."""
    stop = limit - depth.gather(1, chosen)
    points = points_behind(origins, directions, depth, chosen, uniform, config.body_depth,
                           stop.clamp_min(config.body_depth))
    return points, stop > config.body_depth
