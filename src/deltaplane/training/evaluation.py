"""Held-out evaluation during training and sample images (GT | render | error | depth)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from deltaplane.data.dataset import ClipData, audio_context, make_batch, to_uint8
from deltaplane.fields.lips import pooled_spread
from deltaplane.metrics.image import psnr, ssim
from deltaplane.models.triplane_talker import TriplaneTalker

FACE_LABEL_MIN = 3
EVAL_BATCH = 4
LIP_CHUNK = 256
"""Frames a step of `lip_fit`: the regressions alone, no rendering."""


def _render_positions(model: TriplaneTalker, clip: ClipData, positions: Int[Tensor, " batch"]):
    generator = torch.Generator(device=clip.frames.device).manual_seed(0)
    batch = make_batch(clip, positions, model.config.render_resolution)
    output, _ = model(batch.cameras, batch.conditions, generator=generator, plate_warp=batch.plate_warp)
    return batch, output


@torch.no_grad()
def evaluate_clip(model: TriplaneTalker, clip: ClipData, positions: Int[Tensor, " frames"]) -> dict[str, float]:
    """Mean PSNR/SSIM of the rendered frames at `positions` vs ground truth (full frame, face region, raw render),
    the face-mesh depth error of their geometry (world units, `TriplaneTalker.face_depth_error`), how much the
    mouth region changes over these frames next to the ground truth (`mouth_pixel_std_ratio`) and, in lip mode,
    how well the audio predicts the tracked lip vector over the whole clip (`lip_fit`: no rendering, and 16 frames'
    correlation is a noisy measure, 0.59 against the whole test split's 0.67 for one regression)."""
    was_training = model.training
    model.eval()
    values: dict[str, list[Tensor]] = {"psnr": [], "ssim": [], "psnr_face": [], "psnr_raw": [],
                                       "face_depth_error": []}
    renders, truths, masks = [], [], []
    for start in range(0, positions.shape[0], EVAL_BATCH):
        batch, output = _render_positions(model, clip, positions[start:start + EVAL_BATCH])
        prediction = output.rgb.float().clamp(-1, 1)
        renders.append(output.rgb_raw.float().clamp(-1, 1))
        truths.append(batch.images_raw)
        masks.append(batch.lower_face)
        face = clip.parsing[positions[start:start + EVAL_BATCH]] >= FACE_LABEL_MIN
        values["psnr"].append(psnr(prediction, batch.images))
        values["ssim"].append(ssim(prediction, batch.images))
        values["psnr_face"].append(psnr(prediction, batch.images, mask=face))
        values["psnr_raw"].append(psnr(output.rgb_raw.float().clamp(-1, 1), batch.images_raw))
        values["face_depth_error"].append(model.face_depth_error(output, batch).expand(prediction.shape[0]))
    metrics = {f"test/{name}": torch.cat(parts).mean().item() for name, parts in values.items()}
    metrics["test/mouth_pixel_std_ratio"] = mouth_pixel_std_ratio(torch.cat(renders), torch.cat(truths),
                                                                  torch.cat(masks))
    if model.lips is not None:
        every = torch.arange(len(clip), device=clip.mouth_shapes.device)
        metrics.update({f"test/{name}": value for name, value in lip_fit(model, clip, every).items()})
    model.train(was_training)
    return metrics


@torch.no_grad()
def lip_fit(model: TriplaneTalker, clip: ClipData, positions: Int[Tensor, " frames"], calibrated: bool = True
            ) -> dict[str, float]:
    """Lip mode: how well the audio predicts the tracked lip vector at `positions` (`lip_error`: MSE of the
    mean regression in whitened units, 1 = always the mean; `lip_correlation`: Pearson correlation of its first
    component, 0 when the prediction is constant). `calibrated`: with the gain and range of inference, else the
    regressions' raw output (what they are trained on)."""
    audio = audio_context(clip.audio_features, clip.indices[positions])
    predicted = torch.cat([model.predicted_lips(part, calibrated) for part in audio.split(LIP_CHUNK)]).float()
    target = model.lips.coefficients(clip.mouth_shapes[positions])
    return {"lip_error": (predicted - target).square().mean().item(),
            "lip_correlation": pooled_spread(predicted[:, :1], target[:, :1], predicted.new_ones(1))[1]}


def mouth_pixel_std_ratio(renders: Float[Tensor, "frames 3 H W"], truths: Float[Tensor, "frames 3 H W"],
                          masks: Bool[Tensor, "frames 1 H W"]) -> float:
    """Temporal std of the pixels inside any frame's lower-face mask, render over ground truth (a landmark-free
    gauge of mouth motion: a still mouth gives 0)."""
    if renders.shape[0] < 2:
        return float("nan")
    region = masks.any(dim=0).expand_as(renders[0])  # [3, H, W]
    spread = [images.std(dim=0)[region].mean() for images in (renders, truths)]
    return (spread[0] / spread[1].clamp_min(1e-6)).item()


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
