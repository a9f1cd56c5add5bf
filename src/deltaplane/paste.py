"""`deltaplane render --paste-back`: every rendered aligned frame goes back into the original video frame it was
aligned from, through the dataset's per-frame similarity (`tracks.npz` `affine`), blended with a feathered
head-and-neck mask; the original background and torso stay untouched.

Frame order follows the dataset camera path: output frame t replays training frame `DrivingTracks.replay(t)` (the
training split forward, then backward, ...), so its original frame, affine and mask are those of dataset frame
`indices[replay[t]]`, and head pose, camera and background always come from the same recorded frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Float, Int, UInt8
from numpy import ndarray
from torch import Tensor

from deltaplane.checkpoint import DRIVING_TRACKS
from deltaplane.data.dataset import read_arrays, read_image
from deltaplane.data.schema import MANIFEST, TRACKS, parsing_path, read_manifest
from deltaplane.errors import InputError
from deltaplane.inference import DrivingTracks
from deltaplane.media.video import frames_in_order, output_frame_count, probe_video
from deltaplane.preprocess.align import paste_back
from deltaplane.preprocess.masks import FACE_MIDDLE, HEAD

NECK_DROP = 0.08
"""The face is extended this fraction of the aligned side straight down (aligned frames are upright): the neck under
the chin, and room for a jaw that the driving audio opens wider than the recorded frame's."""
MARGIN = 0.02
"""The extended mask is grown this fraction of the side before feathering, so the blend's 50 % line sits outside the
hair and ears and the rendered head is never cut by the recorded outline."""
FEATHER = 0.015
"""Gaussian σ of the blend edge, as a fraction of the side (the weight ramps over about 6σ: ~46 px at 512²)."""
SOURCE_MEMORY = 512 << 20
"""Bytes of original frames held at once while the source video is read in the replay order."""


@dataclass(frozen=True)
class PasteBackOptions:
    """Where to find what --paste-back needs when it is no longer where the run and its dataset recorded it."""

    source: Path | None = None
    """The original video (default: the path recorded in the dataset's manifest)."""
    dataset: Path | None = None
    """The run's dataset (default: the path recorded in the run's config.json)."""


def paste_weight(labels: UInt8[ndarray, "size size"]) -> Float[ndarray, "size size"]:
    """Blend weight of the render in one aligned frame from its parsing map: 1 on the head (label ≥ HEAD: face, hair,
    ears) and the neck under the face, falling to exactly 0 a Gaussian feather beyond, and 0 at the aligned frame's
    border.

    Why the dataset's parsing map rather than an ellipse: it follows each frame's hair and ears, so what is not the
    head (background, shoulders) stays the original pixels; and it was made for exactly these frames and affines."""
    size = labels.shape[0]
    drop, grow, sigma = round(NECK_DROP * size), round(MARGIN * size), FEATHER * size
    radius = math.ceil(3 * sigma)
    # A column kernel anchored at its bottom pixel copies every face pixel up to `drop` pixels downward: the neck is
    # as wide as the jaw, not as the hair and ears.
    neck = cv2.dilate((labels >= FACE_MIDDLE).astype(np.uint8), np.ones((drop + 1, 1), np.uint8), anchor=(0, drop))
    region = (labels >= HEAD).astype(np.uint8) | neck
    region = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    # Clear a border of `radius` so the blurred weight is 0 at the edge of the render (beyond it there is nothing).
    region[:radius], region[-radius:], region[:, :radius], region[:, -radius:] = 0, 0, 0, 0
    weight = cv2.GaussianBlur(region.astype(np.float32), (2 * radius + 1, 2 * radius + 1), sigma)
    return np.clip(weight, 0.0, 1.0)


@dataclass(frozen=True)
class SourceFrame:
    """One original video frame with what pastes a render into it."""

    rgb: UInt8[ndarray, "height width 3"]
    affine: Float[ndarray, "2 3"]
    """Original → rendered-frame pixels."""
    weight: Float[ndarray, "size size"]
    """`paste_weight` of the frame, at the render's size."""

    def paste(self, render: UInt8[ndarray, "size size 3"]) -> UInt8[ndarray, "height width 3"]:
        """This frame with the render blended in (`preprocess.align.paste_back`)."""
        return paste_back(render, self.affine, self.rgb, weight=self.weight)


@dataclass(frozen=True)
class PasteBack:
    """What pasting needs, checked by `open_paste_back`: the original video and each training frame's alignment."""

    source: Path
    dataset: Path
    fps: float
    """The dataset's frame rate: its frame k is the source video's frame at k / fps."""
    image_size: int
    """Side of the dataset's aligned frames, which the affines map into."""
    block: int
    """Original frames decoded at once (`SOURCE_MEMORY` bytes)."""
    frames: Int[ndarray, " train"]
    """Dataset frame number of each row of the run's driving tracks."""
    affines: Float[ndarray, "train 2 3"]
    """Original → aligned (`image_size`²) similarity of each row."""

    def originals(self, replay: Int[Tensor, " frames"], size: int) -> Iterator[SourceFrame]:
        """Per output frame (`replay`: its driving-track row), the original frame to paste a `size`² render into."""
        rows = replay.numpy()
        order = self.frames[rows].tolist()
        scale = size / self.image_size  # pixel coordinates with edges at 0 and the side scale exactly
        for row, number, rgb in zip(rows, order, frames_in_order(self.source, self.fps, order, self.block)):
            labels = read_image(parsing_path(self.dataset, number), size, cv2.IMREAD_GRAYSCALE, cv2.INTER_NEAREST)
            yield SourceFrame(rgb, self.affines[row] * scale, paste_weight(labels))


def open_paste_back(run_dir: Path, run_config: dict, driving: DrivingTracks, options: PasteBackOptions) -> PasteBack:
    """Find and check the run's dataset and original video; InputError saying what to pass when one is missing,
    moved or not the one the run was trained on."""
    dataset = Path(options.dataset or run_config["dataset"])
    if not dataset.is_dir():
        raise InputError(f"--paste-back needs the run's dataset (alignment and masks), but {dataset} is missing; pass "
                         "--dataset DIR")
    manifest = read_manifest(dataset)
    tracks = read_arrays(dataset / TRACKS, manifest.num_frames)
    driving_tracks = read_arrays(run_dir / DRIVING_TRACKS, None, "the run directory is damaged; train again")
    if "indices" not in driving_tracks:
        raise InputError(f"{run_dir / DRIVING_TRACKS} lacks the training frame indices; the run directory is damaged")
    frames = driving_tracks["indices"]
    if (frames.max() >= manifest.num_frames
            or not np.allclose(tracks["cam2world"][frames], driving.cam2world.numpy(), atol=1e-5)):
        raise InputError(f"{dataset} is not the dataset run {run_dir} was trained on (its cameras differ); pass "
                         "--dataset with that dataset")
    recorded = manifest.source
    source = Path(options.source or recorded.path)
    if options.source is not None and not source.is_file():
        raise InputError(f"--source video not found: {source}")
    if not source.is_file():
        raise InputError(f"--paste-back needs the original video {source} (recorded in {dataset / MANIFEST}), but it "
                         "is missing or was moved; pass --source VIDEO")
    info = probe_video(source)
    if (info.width, info.height) != (recorded.width, recorded.height):
        raise InputError(f"{source} is {info.width}×{info.height}, but {dataset} was made from a "
                         f"{recorded.width}×{recorded.height} video; pass --source with the original video")
    if output_frame_count(info.duration, manifest.fps) <= frames.max():
        raise InputError(f"{source} holds {info.duration:.2f} s of video, but the run replays frames up to "
                         f"{(frames.max() + 1) / manifest.fps:.2f} s; pass --source with the original video")
    return PasteBack(source, dataset, manifest.fps, manifest.image_size,
                     max(1, SOURCE_MEMORY // (info.width * info.height * 3)), frames,
                     tracks["affine"][frames].astype(np.float64))
