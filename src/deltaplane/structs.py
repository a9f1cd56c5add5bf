"""Batches and outputs passed between data, models, training and inference (frozen tensor dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from deltaplane.geometry.cameras import Cameras


@dataclass(frozen=True)
class Conditions:
    """Everything the deltaplane is conditioned on, per frame."""

    audio: Float[Tensor, "batch 8 16 dim"]
    """Audio windows of frames t−4 … t+3 (zero windows outside the clip)."""
    eye: Float[Tensor, " batch"]
    """Eye openness (eye aspect ratio)."""
    angles: Float[Tensor, "batch 3"]
    """Camera (yaw, pitch, roll) of the training frame in radians: the head-pose token."""
    landmarks: Float[Tensor, "batch landmark_inputs"]
    """The 6-D landmark feature in [-1, 1], and the brows' feature with `ConditionEncoderConfig.brows`."""

    def to(self, device: torch.device | str) -> Conditions:
        return Conditions(*(getattr(self, f.name).to(device) for f in fields(self)))

    def neutralized(self, mask: Bool[Tensor, " batch"], neutral: NeutralTokens) -> Conditions:
        """These conditions with the eye, angles and landmarks of the masked items set to the `neutral` values."""
        def pick(values: Tensor, value: Tensor) -> Tensor:
            chosen = mask.reshape(-1, *[1] * (values.dim() - 1))
            return torch.where(chosen, value.to(values).expand_as(values), values)

        return replace(self, eye=pick(self.eye, neutral.eye), angles=pick(self.angles, neutral.angles),
                       landmarks=pick(self.landmarks, neutral.landmarks))


@dataclass(frozen=True)
class NeutralTokens:
    """The values of the non-audio tokens that say "nothing in particular": the training video's median eye
    openness and landmark feature, and the frontal camera's angles (`render --neutral`, token dropout)."""

    eye: Float[Tensor, ""]
    angles: Float[Tensor, "3"]
    landmarks: Float[Tensor, " landmark_inputs"]

    @staticmethod
    def of(eye: Float[Tensor, " frames"], landmarks: Float[Tensor, "frames landmark_inputs"]) -> NeutralTokens:
        return NeutralTokens(eye.median(), torch.zeros(3, device=eye.device), landmarks.median(dim=0).values)


@dataclass(frozen=True)
class LipFrames:
    """Frames of a clip for the audio → lip vector regression alone (lip mode): no images, so many per step."""

    indices: Int[Tensor, " batch"]
    audio: Float[Tensor, "batch 8 16 dim"]
    """Audio windows around each frame (`data.dataset.audio_context`)."""
    mouth_shape: Float[Tensor, "batch 40"]
    """Tracked mouth shape (`geometry.lips.mouth_shape`): the regression's target."""


@dataclass(frozen=True)
class FrameBatch:
    """A training/evaluation batch of frames of one clip."""

    indices: Int[Tensor, " batch"]
    images: Float[Tensor, "batch 3 height width"]
    """Ground truth at the output resolution, in [-1, 1]."""
    images_raw: Float[Tensor, "batch 3 raw raw"]
    """Ground truth at the neural-rendering resolution (area-downsampled), in [-1, 1]."""
    lower_face: Bool[Tensor, "batch 1 raw raw"]
    """Mouth/jaw mask at the rendering resolution (mouth-weighted loss)."""
    background: Bool[Tensor, "batch 1 raw raw"]
    """Pixels that are background (segmentation) in their whole rendering-resolution footprint."""
    person: Float[Tensor, "batch 1 raw raw"]
    """Share of each rendering-resolution pixel's footprint that is person (segmentation label ≥ 1): the opacity
    target of the plate mode."""
    plate_warp: Float[Tensor, "batch 2 3"]
    """Where these frames show the background plate (`data.dataset.ClipData.plate_warps`)."""
    face_points: Float[Tensor, "batch points 3"]
    """The 468 face-mesh vertices, then the head proxy's points: (x, y) in pixels of `images`, relative depth (see
    `geometry.face_depth`, `geometry.head_proxy`)."""
    face_point_valid: Bool[Tensor, "batch points"]
    """Points the depth prior may use (interior of the face, frame with a detected face; drawn head points)."""
    face_point_colour: Bool[Tensor, "batch points"]
    """Valid vertices whose frame colour is a surface colour (not at the eyes or the mouth opening): the pseudo
    multi-view colour term's."""
    mouth_box: Bool[Tensor, "batch 1 height width"]
    """Square box around the mouth at the output resolution (`data.dataset.mouth_boxes`)."""
    face_box: Bool[Tensor, "batch 1 height width"]
    """Square box around the aligned 68 landmarks (brows to chin) at the output resolution
    (`data.dataset.square_boxes`)."""
    eyes_box: Bool[Tensor, "batch 1 height width"]
    """Box around the brows and the eyes at the output resolution (`data.dataset.eyes_boxes`)."""
    mouth_shape: Float[Tensor, "batch 40"]
    """Tracked mouth shape (`geometry.lips.mouth_shape`): the lip vector's training target."""
    cameras: Cameras
    conditions: Conditions

    def to(self, device: torch.device | str) -> FrameBatch:
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})


@dataclass(frozen=True)
class RenderOutput:
    """What a talking-head model renders for a batch of cameras."""

    rgb: Float[Tensor, "batch 3 height width"]
    """Final (super-resolved) image in [-1, 1]."""
    rgb_raw: Float[Tensor, "batch 3 raw raw"]
    """The volume-rendered RGB (first 3 feature channels) in [-1, 1]."""
    depth: Float[Tensor, "batch 1 raw raw"]
    """Expected ray depth (distance along the ray) at the rendering resolution."""
    accumulation: Float[Tensor, "batch 1 raw raw"]
    depth_spread: Float[Tensor, "batch 1 raw raw"]
    """Variance of the ray termination depth (`render.volume.Composited.spread`): 0 for a crisp surface."""
