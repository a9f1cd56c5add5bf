"""Talk3D's lip-sync term: 5-frame windows whose frames 1 and 3 are rendered, scored by the Wav2Lip expert.

Each training step renders `batch_size` frames drawn as pairs (s+1, s+3) of windows s … s+4 of consecutive
training frames; the other three frames of each window are ground truth. Faces are cropped with the square box of
the aligned 68 landmarks, resized to 96² with the same (bilinear, antialiased) filter for rendered and real frames
(fixing Talk3D's nearest-vs-bilinear mismatch), and the expert sees their lower halves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from deltaplane.audio.io import load_audio
from deltaplane.data.dataset import ClipData, to_signed
from deltaplane.errors import InputError
from deltaplane.metrics.syncnet import (Wav2LipSyncNet, mel_window_for_frame, sync_loss, wav2lip_face_window,
                                        wav2lip_mel)

WINDOW = 5
RENDERED = (1, 3)
CROP = 96


def crop_faces(images: Float[Tensor, "B 3 H W"], boxes: Float[Tensor, "B 4"]) -> Float[Tensor, "B 3 96 96"]:
    """Bilinear crops of the (x0, y0, x1, y1) pixel boxes resized to 96² (differentiable in the images)."""
    size = images.shape[-1]
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / size * 2 - 1  # [B, 2] in grid units
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 / size * 2  # [B, 2]
    ramp = torch.linspace(-1, 1, CROP, device=images.device) * (1 - 1 / CROP)
    grid_x = centre[:, 0, None] + half[:, 0, None] * ramp  # [B, 96]
    grid_y = centre[:, 1, None] + half[:, 1, None] * ramp
    grid = torch.stack(torch.broadcast_tensors(grid_x[:, None, :], grid_y[:, :, None]), dim=-1)  # [B, 96, 96, 2]
    scale = (boxes[:, 2] - boxes[:, 0]).mean().item() / CROP
    source = F.avg_pool2d(images, int(scale)) if scale >= 2 else images  # anti-alias big crops
    return F.grid_sample(source.float(), grid, mode="bilinear", align_corners=False)


class SyncSupervisor:
    """Samples sync windows from a training clip and computes the expert loss for their rendered frames."""

    def __init__(self, expert: Wav2LipSyncNet, clip: ClipData, audio_path: Path, fps: float) -> None:
        if abs(fps - 25.0) > 1e-6:
            raise InputError("the Wav2Lip sync expert expects 25 fps datasets")
        self.expert, self.clip = expert, clip
        self.mel = wav2lip_mel(torch.from_numpy(load_audio(audio_path)))
        indices = clip.indices.cpu().numpy()
        consecutive = indices[WINDOW - 1:] - indices[:1 - WINDOW] == WINDOW - 1
        last_frame = (self.mel.shape[1] - 16) * fps / 80.0
        self.starts = np.flatnonzero(consecutive & (indices[:1 - WINDOW] <= last_frame))
        if len(self.starts) == 0:
            raise InputError("the training split has no 5 consecutive frames for the sync loss")

    def sample(self, batch_size: int, generator: torch.Generator) -> tuple[Int[Tensor, " B"], Int[Tensor, " W"]]:
        """(positions of the frames to render, window start positions); batch_size must be even."""
        if batch_size % 2:
            raise InputError("the sync loss needs an even batch size")
        chosen = torch.randint(len(self.starts), (batch_size // 2,), generator=generator)
        starts = torch.from_numpy(self.starts)[chosen]
        positions = (starts[:, None] + torch.tensor(RENDERED)).reshape(-1)
        return positions.to(self.clip.frames.device), starts.to(self.clip.frames.device)

    def loss(self, rendered: Float[Tensor, "B 3 H W"], starts: Int[Tensor, " W"]) -> Float[Tensor, ""]:
        windows = starts[:, None] + torch.arange(WINDOW, device=starts.device)  # [W, 5]
        frames = to_signed(self.clip.frames[windows.reshape(-1)]).reshape(*windows.shape, *rendered.shape[1:])
        frames = frames.clone()
        frames[:, list(RENDERED)] = rendered.float().reshape(len(starts), len(RENDERED), *rendered.shape[1:])
        crops = crop_faces(frames.flatten(0, 1), self.clip.face_boxes[windows.reshape(-1)])
        faces = wav2lip_face_window(crops.reshape(len(starts), WINDOW, 3, CROP, CROP))
        mel = torch.stack([mel_window_for_frame(self.mel, int(self.clip.indices[s])) for s in starts.tolist()])
        audio_embedding, face_embedding = self.expert(mel[:, None].to(faces.device), faces)
        return sync_loss(audio_embedding, face_embedding)
