"""Windowed training (issue 10; docs/performance.md "Levers still open"): each training frame is rendered through
a window of its image instead of whole, at the same ray density, and every pixel-space input of the loss is cut to
that window. Most windows lie over the face, so a step spends its rays and super-resolution pixels where the detail
is wanted; both drop by (frame / window)². The window's camera is the frame's with the principal point moved
(`Cameras.window`), so each window pixel sees exactly the ray the whole frame's pixel would; evaluation and
rendering stay whole-frame.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from jaxtyping import Float, Int
from torch import Tensor

from deltaplane.devices import host_to_device
from deltaplane.render.plate import window_warp
from deltaplane.structs import FrameBatch
from deltaplane.training.adversarial import crop


@dataclass(frozen=True)
class WindowConfig:
    """Where the training windows lie and how large they are (`TrainConfig.window`)."""

    size: int = 320
    """Side of the window in output pixels; a multiple of the super-resolution's scale (the window's rays are then
    whole pixels of the rendering resolution). The face box (brows to chin) of the shared clips spans 205–270 of
    512 pixels; 320 leaves 25–55 pixels of context around it for 39 % of a whole frame's rays."""
    face_share: float = 0.75
    """Share of the windows centred on their frame's face box (moved by up to `jitter`); the others are one of the
    windows that tile the frame (at 320 of 512 its four corners), so that the backdrop, the torso and the hair keep
    being taught, out to the frame's edges (`draw_windows`)."""
    jitter: int = 32
    """Largest shift, in output pixels, of a face window's centre from the face box's along each axis."""

    def __post_init__(self) -> None:
        if self.size < 8 or not 0 <= self.face_share <= 1 or self.jitter < 0:
            raise ValueError(f"WindowConfig needs size ≥ 8, face_share in [0, 1] and jitter ≥ 0, got {self}")


def draw_windows(face_boxes: Float[Tensor, "B 4"], config: WindowConfig, image_size: int, scale: int,
                 generator: torch.Generator) -> Int[Tensor, "B 2"]:
    """Top-left (x, y) of each frame's window in output pixels, multiples of `scale` (the output over the rendering
    resolution) and inside the image: a `face_share` of them centred on the frame's (x0, y0, x1, y1) face box moved
    by up to `jitter`, the others one of the n × n windows that tile the image evenly (n = ⌈image / size⌉: the four
    corners for the default 320 of 512), drawn evenly. Tiles, not uniform places: a pixel within `size` of an edge
    lies only in windows that start between that edge and it, so uniform places leave the frame's border almost
    untaught (run 54: macron's whole-frame PSNR fell 0.44 dB while its face rose), where the tiles cover every pixel
    in at least 1/n² of them. `generator` (CPU) draws them; they are computed on the boxes' device (no wait for the
    device)."""
    if config.size > image_size or config.size % scale:
        raise ValueError(f"a training window of {config.size} px must fit the {image_size}-px frame and be a "
                         f"multiple of the super-resolution's scale {scale}")
    count, free = face_boxes.shape[0], (image_size - config.size) // scale  # in rendering pixels from here on
    tiles = -(-image_size // config.size)
    draws = host_to_device(torch.rand(count, 5, generator=generator), face_boxes.device)
    centred = ((face_boxes[:, :2] + face_boxes[:, 2:]) / 2 - config.size / 2) / scale
    moved = torch.floor(centred + (draws[:, :2] * 2 - 1) * (config.jitter / scale))
    # rounded even steps of at most the window's side: neighbouring tiles meet or overlap
    tile = (draws[:, 2:4] * tiles).floor().clamp(max=tiles - 1)
    tiled = torch.round(tile * (free / max(tiles - 1, 1)))
    on_face = draws[:, 4:] < config.face_share
    return torch.where(on_face, moved, tiled).clamp(0, free).long() * scale


def window_batch(batch: FrameBatch, corners: Int[Tensor, "B 2"], size: int) -> FrameBatch:
    """`batch` seen through a size² window of each frame at its `corners` (output pixels, multiples of the output
    over the rendering resolution, as `draw_windows` gives): the images, masks and boxes cut to it, the depth-prior
    points moved into it (those outside it no longer valid), the cameras through it (`Cameras.window`) and the
    plate's warp to it (`render.plate.window_warp`)."""
    scale = batch.images.shape[-1] // batch.images_raw.shape[-1]
    corners = corners.to(batch.images.device)

    def cut(images: Tensor, step: int) -> Tensor:
        return crop(images, corners[:, None] // step, size // step)

    raw = {name: cut(getattr(batch, name), scale) for name in ("images_raw", "lower_face", "background", "person")}
    full = {name: cut(getattr(batch, name), 1) for name in ("images", "mouth_box", "face_box", "eyes_box")}
    xy = batch.face_points[..., :2] - corners[:, None].to(batch.face_points.dtype)
    inside = ((xy >= 0) & (xy < size)).all(-1)
    return replace(batch, **raw, **full, face_points=torch.cat((xy, batch.face_points[..., 2:]), dim=-1),
                   face_point_valid=batch.face_point_valid & inside, face_point_colour=batch.face_point_colour & inside,
                   cameras=batch.cameras.window(corners, size, size),
                   plate_warp=window_warp(batch.plate_warp, corners, size, batch.images.shape[-1]))
