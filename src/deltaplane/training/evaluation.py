"""Held-out evaluation during training and sample images (GT | render | error | depth)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from torch import Tensor

from deltaplane.data.dataset import ClipData, make_batch, to_uint8
from deltaplane.metrics.image import psnr, ssim
from deltaplane.models.triplane_talker import TriplaneTalker

FACE_LABEL_MIN = 3
EVAL_BATCH = 4


def _render_positions(model: TriplaneTalker, clip: ClipData, positions: Int[Tensor, " batch"]):
    generator = torch.Generator(device=clip.frames.device).manual_seed(0)
    batch = make_batch(clip, positions, model.config.render_resolution)
    output, _ = model(batch.cameras, batch.conditions, generator=generator)
    return batch, output


@torch.no_grad()
def evaluate_clip(model: TriplaneTalker, clip: ClipData, positions: Int[Tensor, " frames"]) -> dict[str, float]:
    """Mean PSNR/SSIM of the rendered frames at `positions` vs ground truth (full frame, face region, raw render)
    and the face-mesh depth error of their geometry (world units, `TriplaneTalker.face_depth_error`)."""
    was_training = model.training
    model.eval()
    values: dict[str, list[Tensor]] = {"psnr": [], "ssim": [], "psnr_face": [], "psnr_raw": [],
                                       "face_depth_error": []}
    for start in range(0, positions.shape[0], EVAL_BATCH):
        batch, output = _render_positions(model, clip, positions[start:start + EVAL_BATCH])
        prediction = output.rgb.float().clamp(-1, 1)
        face = clip.parsing[positions[start:start + EVAL_BATCH]] >= FACE_LABEL_MIN
        values["psnr"].append(psnr(prediction, batch.images))
        values["ssim"].append(ssim(prediction, batch.images))
        values["psnr_face"].append(psnr(prediction, batch.images, mask=face))
        values["psnr_raw"].append(psnr(output.rgb_raw.float().clamp(-1, 1), batch.images_raw))
        values["face_depth_error"].append(model.face_depth_error(output, batch).expand(prediction.shape[0]))
    model.train(was_training)
    return {f"test/{name}": torch.cat(parts).mean().item() for name, parts in values.items()}


@torch.no_grad()
def sample_image(model: TriplaneTalker, clip: ClipData, position: int) -> np.ndarray:
    """One row: ground truth | render | 4×|error| | depth (normalised), all at the output resolution."""
    was_training = model.training
    model.eval()
    batch, output = _render_positions(model, clip, torch.tensor([position], device=clip.frames.device))
    model.train(was_training)
    size = batch.images.shape[-1]
    error = ((output.rgb.float() - batch.images).abs() * 4 - 1).clamp(-1, 1)
    depth = F.interpolate(output.depth.float(), size=(size, size), mode="nearest")[0]
    depth = (depth - depth.min()) / (depth.max() - depth.min()).clamp_min(1e-6) * 2 - 1
    tiles = [batch.images[0], output.rgb[0], error[0], depth.expand(3, -1, -1)]
    return np.concatenate([to_uint8(tile) for tile in tiles], axis=1)
