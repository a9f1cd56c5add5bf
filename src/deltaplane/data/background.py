"""The background plate: the static backdrop behind the person, recovered from a dataset's aligned frames.

`recover_background` is the maths (numpy/cv2 only): per pixel, the median of the frames in which that pixel is
background, after dilating the person a few pixels so that the halo around the person stays out; pixels that are
never background are inpainted. `dataset_background` applies it to a dataset's training split and caches the result
as `background.png` in the dataset folder (docs/dataset.md).

Registration: the aligned crop follows the face, so the backdrop moves in the aligned frames (≈ 27 px RMS at 512² on
obama_20s and macron_fr_50s, mostly head translation, which no orbit camera explains). The dataset's plate is
therefore registered: each frame is resampled into the plate's *reference frame* (the aligned frame under the mean
similarity of the training split) through its `ClipData.plate_warps`. Warped back into the training frames, the
registered plate is off by 1.6 / 2.6 grey levels on their background pixels (obama / macron), the unregistered
per-pixel median by 8.7 / 12.2.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from torch import Tensor

from deltaplane.atomic import atomic_path, write_json
from deltaplane.data.dataset import BACKGROUND_LABEL, ClipData, load_clip, to_signed
from deltaplane.data.schema import STAGES_DIR, read_manifest
from deltaplane.geometry.cameras import Cameras, orbit_cam2world
from deltaplane.preprocess.align import cv2_affine

BACKGROUND_PNG = "background.png"
"""The cached plate of a dataset (RGB, the dataset's image size), registered on the reference frame."""
BACKGROUND_RECORD = "background.json"
"""`STAGES_DIR` record of what the cached plate was computed from (a re-run of preprocess invalidates it)."""
PERSON_DILATION = 5
"""Pixels (at 512², scaled with the image size) by which the person mask grows before a pixel counts as background:
the segmentation edge and the hair's halo would otherwise tint the plate."""
MIN_VIEW_FRACTION = 0.02
"""The dataset plate trusts a pixel seen as background in at least this share of the frames: rarer sightings are
mostly segmentation misses at the person's edge (hair), which would leave dark specks around the head."""
MAX_FRAMES = 256
"""Frames (evenly spaced over the split) the dataset plate is the median of: neighbouring frames are nearly equal,
and the per-pixel sort stays a few seconds."""


def recover_background(frames: UInt8[np.ndarray, "frames height width 3"],
                       background: Bool[np.ndarray, "frames height width"], dilation: int = PERSON_DILATION,
                       warps: Float[np.ndarray, "frames 2 3"] | None = None, min_views: int = 1
                       ) -> tuple[UInt8[np.ndarray, "height width 3"], Bool[np.ndarray, "height width"]]:
    """(plate, observed): the per-pixel median over the frames where the pixel is background, and where that was in
    at least `min_views` frames; the rest of the plate is inpainted smoothly from its surroundings (`_fill`).

    `warps` (optional) map plate pixels to frame pixels (2×3, pixel centres at +0.5): frame i is resampled into the
    plate's frame first (bilinear) and counts only where it covers the plate. The person mask (¬`background`) grows
    by `dilation` pixels in the frame before resampling.
    """
    count, height, width, _ = frames.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilation + 1, 2 * dilation + 1))
    values = np.empty((count, height, width, 3), np.float32)
    for index in range(count):  # NaN where the pixel is not (reliably) background
        person = cv2.dilate((~background[index]).astype(np.uint8), kernel) if dilation > 0 else ~background[index]
        frame, valid = frames[index].astype(np.float32), person == 0
        if warps is not None:
            matrix = cv2_affine(warps[index])
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            frame = cv2.warpAffine(frame, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
            valid = cv2.warpAffine(valid.astype(np.float32), matrix, (width, height), flags=flags,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0.0) > 0.999
        values[index] = np.where(valid[..., None], frame, np.nan)
    observed = (~np.isnan(values[..., 0])).sum(axis=0) >= max(min_views, 1)
    median = _nanmedian(values)
    plate = _fill(np.nan_to_num(median), observed) if observed.any() else np.zeros_like(median)
    return np.clip(plate + 0.5, 0, 255).astype(np.uint8), observed


def _fill(image: Float[np.ndarray, "height width 3"], known: Bool[np.ndarray, "height width"]
          ) -> Float[np.ndarray, "height width 3"]:
    """Push-pull inpainting: unknown pixels take the (bilinearly upsampled) value of the next coarser level, where
    each texel is the mean of the known pixels under it. The fill is smooth, unlike cv2.inpaint's streaks radiating
    into a hole as large as a head."""
    if known.all() or max(known.shape) <= 1:
        return image
    height, width = known.shape
    size = ((width + 1) // 2, (height + 1) // 2)
    weight = cv2.resize(known.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    total = cv2.resize(image * known[..., None], size, interpolation=cv2.INTER_AREA)
    coarse = _fill(total / np.maximum(weight, 1e-6)[..., None], weight > 0)
    upsampled = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.where(known[..., None], image, upsampled)


def _nanmedian(values: Float[np.ndarray, "frames *pixels"]) -> Float[np.ndarray, "*pixels"]:
    """Median over the first axis ignoring NaN (NaN where all are): a sort, not numpy's per-column loop."""
    ordered = np.sort(values, axis=0)  # NaN sorts last
    valid = (~np.isnan(values)).sum(axis=0)
    low, high = (np.maximum(valid - 1, 0) // 2)[None], (valid // 2)[None]
    high = np.minimum(high, values.shape[0] - 1)
    return 0.5 * (np.take_along_axis(ordered, low, 0)[0] + np.take_along_axis(ordered, high, 0)[0])


def dataset_background(dataset_dir: str | Path) -> UInt8[np.ndarray, "size size 3"]:
    """The registered plate of the dataset's training split at its image size (RGB). Computed once and cached as
    BACKGROUND_PNG; recomputed when the aligned frames or the split changed (a record in STAGES_DIR)."""
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    parameters = [manifest.stages.get("frames"), manifest.splits["train"], PERSON_DILATION, MIN_VIEW_FRACTION,
                  MAX_FRAMES]
    fingerprint = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path, record = dataset_dir / BACKGROUND_PNG, dataset_dir / STAGES_DIR / BACKGROUND_RECORD
    try:
        if json.loads(record.read_text()).get("fingerprint") == fingerprint:
            cached = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if cached is not None and cached.shape[:2] == (manifest.image_size, manifest.image_size):
                return np.ascontiguousarray(cached[..., ::-1])
    except (OSError, json.JSONDecodeError, AttributeError):
        pass  # no (usable) cache: compute it
    _, clip = load_clip(dataset_dir, "train")
    chosen = np.linspace(0, len(clip) - 1, min(MAX_FRAMES, len(clip))).round().astype(np.int64)
    warps = clip.plate_warps[chosen].double().numpy()
    warps[:, :, 2] *= manifest.image_size  # units of the side → pixels
    plate, _ = recover_background(clip.frames[chosen].permute(0, 2, 3, 1).numpy(),
                                  clip.parsing[chosen, 0].numpy() == BACKGROUND_LABEL,
                                  dilation=round(PERSON_DILATION * manifest.image_size / 512), warps=warps,
                                  min_views=round(MIN_VIEW_FRACTION * len(chosen)))
    try:
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), plate[..., ::-1]):
                raise OSError(f"cv2 could not write {tmp}")
        write_json(record, {"fingerprint": fingerprint})
    except OSError as exc:  # a read-only dataset still trains; it recomputes the plate next time
        warnings.warn(f"cannot cache the background plate in {dataset_dir}: {exc}", stacklevel=2)
    return plate


def background_plate(dataset_dir: str | Path, clip: ClipData) -> tuple[Float[Tensor, "3 size size"], Cameras]:
    """The dataset's plate in [-1, 1] at its image size, and the camera of its reference frame: the orbit camera at
    the mean angles of `clip` (the training split), with the clip's intrinsics."""
    plate = to_signed(torch.from_numpy(dataset_background(dataset_dir)).permute(2, 0, 1)[None])[0]
    yaw, pitch, roll = clip.angles.mean(dim=0)
    size = clip.frames.shape[-1]
    camera = Cameras(orbit_cam2world(yaw, pitch, roll)[None], clip.intrinsics.mean(dim=0, keepdim=True), size, size)
    return plate, camera
