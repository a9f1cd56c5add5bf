"""Load a preprocessed dataset split into memory and cut it into `FrameBatch`es.

Frames are kept as uint8 (a 50 s clip at 512² is ~1 GB) on whatever device the caller moves them to; batches are
converted to [-1, 1] floats on the fly.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int, UInt8
from torch import Tensor

from deltaplane.audio.features import normalize_utterance
from deltaplane.data.schema import (AUDIO_FEATURES, FRAMES_VIDEO, TRACK_ARRAYS, TRACKS, Manifest, frame_path,
                                    parsing_path, read_manifest)
from deltaplane.errors import InputError
from deltaplane.geometry.cameras import Cameras
from deltaplane.geometry.face_depth import aligned_face_points, interior_vertices
from deltaplane.geometry.face_regions import BROWS, EYES, brow_feature, near_features
from deltaplane.geometry.head_proxy import CHIN, head_points
from deltaplane.geometry.lips import mouth_shape
from deltaplane.preprocess.align import invert_affine
from deltaplane.structs import Conditions, FrameBatch, LipFrames

BACKGROUND_LABEL = 0
LOWER_FACE_LABEL = 5
MOUTH_BOX_SPAN = 1.6
"""Mouth boxes are this many mouth widths wide (lips, teeth and the skin around them)."""
EYES_BOX_MARGIN = 0.15
"""Margin of `eyes_boxes` around the brow and eye points, in outer-eye-corner distances (~15 px at 512²)."""
AUDIO_CONTEXT = 8
"""Audio windows per sample: frames t−4 … t+3 (Talk3D)."""
DAMAGED = "the dataset is damaged; re-run `deltaplane preprocess`"


@dataclass(frozen=True)
class ClipData:
    """One split of a dataset, in memory. Per-frame tensors are indexed by position in `indices`."""

    indices: Int[Tensor, " frames"]
    """Frame numbers in the full clip."""
    frames: UInt8[Tensor, "frames 3 size size"]
    parsing: UInt8[Tensor, "frames 1 size size"]
    audio_features: Float[Tensor, "all_frames 16 dim"]
    """Windows of the *whole* clip, so the audio context of a test frame can reach back into training frames."""
    eye: Float[Tensor, " frames"]
    angles: Float[Tensor, "frames 3"]
    landmarks: Float[Tensor, "frames landmark_inputs"]
    cam2world: Float[Tensor, "frames 4 4"]
    intrinsics: Float[Tensor, "frames 3 3"]
    """Pixel intrinsics for `size`² frames."""
    mouth_boxes: Float[Tensor, "frames 4"]
    """Square (x0, y0, x1, y1) box of side MOUTH_BOX_SPAN mouth widths around the mouth points 48–67, in `size`²
    pixels (the mouth loss at the output resolution)."""
    face_boxes: Float[Tensor, "frames 4"]
    """Square (x0, y0, x1, y1) box around the aligned 68 landmarks, in `size`² pixels (sync-expert and
    discriminator crops)."""
    eyes_boxes: Float[Tensor, "frames 4"]
    """(x0, y0, x1, y1) box around the brows and the eyes (`eyes_boxes`), in `size`² pixels (the eyes-box loss)."""
    face_points: Float[Tensor, "frames points 3"]
    """The 468 face-mesh vertices, then the head proxy's points if loaded (`load_clip`), in `size`² pixels +
    relative depth (`geometry.face_depth.aligned_face_points`, `geometry.head_proxy.head_points`)."""
    face_point_valid: Bool[Tensor, "frames points"]
    """Interior vertices of frames whose face was detected (not interpolated over a gap), and the drawn head
    points."""
    face_point_colour: Bool[Tensor, "frames points"]
    """Valid vertices whose frame colour is their surface's: away from the eyes and the mouth opening
    (`geometry.face_regions.near_features`); every valid head point."""
    mouth_shapes: Float[Tensor, "frames 40"]
    """Mouth shape of each frame (`geometry.lips.mouth_shape` of the aligned 68 landmarks)."""
    plate_warps: Float[Tensor, "frames 2 3"]
    """Map from the background plate's reference frame to each aligned frame, in units of the image side
    (`plate_warps`): where each frame shows the static backdrop. The reference is the *training* split's mean
    alignment whatever split is loaded: the plate was registered on it, so test frames must be placed against it."""

    def __len__(self) -> int:
        return self.indices.shape[0]

    def to(self, device: torch.device | str) -> ClipData:
        return ClipData(*(getattr(self, f.name).to(device) for f in fields(self)))


def read_image(path: Path, size: int, flags: int, interpolation: int) -> np.ndarray:
    """A dataset image (cv2 `flags`) resized to `size`² with `interpolation`; InputError naming it if unreadable."""
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputError(f"cannot read {path}: {DAMAGED}")
    if image.shape[0] != size:
        image = cv2.resize(image, (size, size), interpolation=interpolation)
    return image


def _read_frames(dataset_dir: Path, manifest: Manifest, indices: list[int], size: int
                 ) -> UInt8[np.ndarray, "frames size size 3"]:
    """The RGB frames at `indices`: decoded once from FRAMES_VIDEO, or read from the JPEGs of older datasets."""
    if not (dataset_dir / FRAMES_VIDEO).is_file():
        return np.stack([read_image(frame_path(dataset_dir, i), size, cv2.IMREAD_COLOR, cv2.INTER_AREA)[..., ::-1]
                         for i in indices])
    from deltaplane.media.video import iter_frames

    wanted = set(indices)
    decoded: dict[int, np.ndarray] = {}
    for index, rgb in enumerate(iter_frames(dataset_dir / FRAMES_VIDEO, manifest.fps)):
        if index in wanted:
            decoded[index] = rgb if rgb.shape[0] == size else cv2.resize(rgb, (size, size),
                                                                         interpolation=cv2.INTER_AREA)
        if index >= max(indices):
            break
    missing = wanted - decoded.keys()
    if missing:
        raise InputError(f"{dataset_dir / FRAMES_VIDEO} holds {len(decoded)} of the frames; frame {min(missing)} is "
                         f"missing: {DAMAGED}")
    return np.stack([decoded[i] for i in indices])


def load_clip(dataset_dir: str | Path, split: str, size: int | None = None,
              normalize_audio: bool = False, head_proxy: bool = False, brows: bool = False
              ) -> tuple[Manifest, ClipData]:
    """Load `split` ('train', 'test' or 'all') resized to `size`² (default: the dataset's image size);
    `normalize_audio` standardises the clip's audio features (`audio.features.normalize_utterance`); `head_proxy`
    appends the head proxy's points to the mesh's (`geometry.head_proxy`, about 7 ms a frame: only a model with
    `TriplaneTalkerConfig.head_proxy` reads them); `brows` appends the brows' feature to the landmark feature
    (`geometry.face_regions.brow_feature`, for a model with `ConditionEncoderConfig.brows`)."""
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    if split == "all":
        indices = list(range(manifest.num_frames))
    elif split in manifest.splits:
        indices = manifest.splits[split]
    else:
        raise InputError(f"dataset {dataset_dir} has no split {split!r} (has: {', '.join(manifest.splits)})")
    if not indices:
        raise InputError(f"split {split!r} of {dataset_dir} is empty")
    size = size or manifest.image_size
    tracks, features = _read_tables(dataset_dir, manifest)  # small: a damaged one fails before the frames decode
    frames = _read_frames(dataset_dir, manifest, indices, size)
    parsing = np.stack([read_image(parsing_path(dataset_dir, i), size, cv2.IMREAD_GRAYSCALE, cv2.INTER_NEAREST)
                        for i in indices])
    if normalize_audio:
        features = normalize_utterance(features)
    select = np.asarray(indices)
    intrinsics = tracks["intrinsics"][select].copy()
    intrinsics[:, :2] *= size / manifest.image_size
    clip = ClipData(
        indices=torch.as_tensor(select),
        frames=torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous(),
        parsing=torch.from_numpy(parsing)[:, None].contiguous(),
        audio_features=torch.from_numpy(features),
        eye=torch.from_numpy(tracks["eye_openness"][select].astype(np.float32)),
        angles=torch.from_numpy(tracks["angles"][select].astype(np.float32)),
        landmarks=torch.from_numpy(_landmark_inputs(tracks, select, brows)),
        cam2world=torch.from_numpy(tracks["cam2world"][select].astype(np.float32)),
        intrinsics=torch.from_numpy(intrinsics.astype(np.float32)),
        mouth_boxes=torch.from_numpy(mouth_boxes(tracks["landmarks_aligned"][select] * (size / manifest.image_size))),
        face_boxes=torch.from_numpy(square_boxes(tracks["landmarks_aligned"][select] * (size / manifest.image_size))),
        eyes_boxes=torch.from_numpy(eyes_boxes(tracks["landmarks_aligned"][select] * (size / manifest.image_size))),
        **_face_points(tracks, select, size / manifest.image_size, parsing if head_proxy else None,
                       intrinsics[:, 0, 0]),
        mouth_shapes=torch.from_numpy(mouth_shape(tracks["landmarks_aligned"][select])),
        plate_warps=torch.from_numpy(plate_warps(tracks["affine"][select],  # Ā of the training split, any split
                                                 tracks["affine"][manifest.splits["train"]], manifest.image_size)),
    )
    return manifest, clip


def read_arrays(path: Path, num_frames: int | None, hint: str = DAMAGED) -> dict[str, np.ndarray]:
    """Every array of an .npz (by name) or .npy (under its file name), read now so that a truncated file fails here,
    naming itself (`hint` says what to do); with `num_frames`, each must hold one row per frame."""
    try:
        with open(path, "rb") as handle:
            loaded = np.load(handle)
            arrays = ({name: loaded[name] for name in loaded.files} if isinstance(loaded, np.lib.npyio.NpzFile)
                      else {path.name: loaded})
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"cannot read {path} ({exc}): {hint}") from exc
    for name, array in arrays.items():
        if num_frames is not None and (array.ndim == 0 or array.shape[0] != num_frames):
            raise InputError(f"{path} holds {array.shape[0] if array.ndim else 0} rows of {name} for {num_frames} "
                             f"frames: {hint}")
    return arrays


def _read_tables(dataset_dir: Path, manifest: Manifest
                 ) -> tuple[dict[str, np.ndarray], Float[np.ndarray, "all_frames window dim"]]:
    """tracks.npz (every array of `TRACK_ARRAYS`) and audio_features.npy as float32, checked against the manifest."""
    tracks = read_arrays(dataset_dir / TRACKS, manifest.num_frames)
    missing = TRACK_ARRAYS.keys() - tracks.keys()
    if missing:
        raise InputError(f"{dataset_dir / TRACKS} lacks {', '.join(sorted(missing))}: {DAMAGED}")
    features = read_arrays(dataset_dir / AUDIO_FEATURES, manifest.num_frames)[AUDIO_FEATURES]
    if features.ndim != 3 or features.shape[-1] != manifest.audio.dim:
        raise InputError(f"{dataset_dir / AUDIO_FEATURES} holds {list(features.shape)} features, not [frames, window, "
                         f"{manifest.audio.dim}]: {DAMAGED}")
    return tracks, features.astype(np.float32)


def _face_points(tracks: dict[str, np.ndarray], select: np.ndarray, scale: float,
                 parsing: UInt8[np.ndarray, "frames size size"] | None, focal: Float[np.ndarray, " frames"]
                 ) -> dict[str, Tensor]:
    """The depth prior's points: aligned mesh vertices scaled to the loaded size, then, given the frames'
    `parsing`, the head proxy's points (`geometry.head_proxy`, drawn with each frame's number as the seed); which
    of them to use, and which of those show a surface colour (every valid head point: hair and ears do not move
    like the eyes and the lips)."""
    points = aligned_face_points(tracks["mesh_original"][select], tracks["affine"][select],
                                 tracks["intrinsics"][select, 0, 0])
    points[..., :2] *= scale
    landmarks = tracks["landmarks_aligned"][select] * scale
    valid = interior_vertices(points[..., :2]) & tracks["face_detected"][select, None]
    colour = valid & ~near_features(points[..., :2], landmarks)
    if parsing is None:
        return {"face_points": torch.from_numpy(points), "face_point_valid": torch.from_numpy(valid),
                "face_point_colour": torch.from_numpy(colour)}
    head = [head_points(labels, mesh, ok, chin, f, np.random.default_rng(int(index)))
            for labels, mesh, ok, chin, f, index in zip(parsing, points, valid, landmarks[:, CHIN, 1], focal, select)]
    head_xyz, head_valid = np.stack([h[0] for h in head]), np.stack([h[1] for h in head])
    return {"face_points": torch.from_numpy(np.concatenate([points, head_xyz], 1)),
            "face_point_valid": torch.from_numpy(np.concatenate([valid, head_valid], 1)),
            "face_point_colour": torch.from_numpy(np.concatenate([colour, head_valid], 1))}


def _landmark_inputs(tracks: dict[str, np.ndarray], select: np.ndarray, brows: bool
                     ) -> Float[np.ndarray, "frames landmark_inputs"]:
    """The landmark token's input: the 6-D landmark feature, and with `brows` the brows' feature."""
    feature = tracks["landmark_feature"][select]
    if brows:
        feature = np.concatenate([feature, brow_feature(tracks["landmarks_aligned"][select])], axis=1)
    return feature.astype(np.float32)


def square_boxes(landmarks: Float[np.ndarray, "frames 68 2"]) -> Float[np.ndarray, "frames 4"]:
    """The square around each frame's landmark bounding box (side = its longer edge)."""
    low, high = landmarks.min(axis=1), landmarks.max(axis=1)
    centre, half = (low + high) / 2, (high - low).max(axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def mouth_boxes(landmarks: Float[np.ndarray, "frames 68 2"]) -> Float[np.ndarray, "frames 4"]:
    """Square boxes MOUTH_BOX_SPAN mouth widths (corners 48–54) wide, centred on the mean of points 48–67."""
    centre = landmarks[:, 48:68].mean(axis=1)
    half = MOUTH_BOX_SPAN / 2 * np.linalg.norm(landmarks[:, 54] - landmarks[:, 48], axis=1, keepdims=True)
    return np.concatenate([centre - half, centre + half], axis=1).astype(np.float32)


def eyes_boxes(landmarks: Float[np.ndarray, "frames 68 2"]) -> Float[np.ndarray, "frames 4"]:
    """Boxes around the brows (points 17–26) and the eyes (36–47), grown by EYES_BOX_MARGIN outer-eye-corner
    distances on every side: the brows' whole travel, the lids and the forehead's folds just above the brows."""
    points = landmarks[:, [*BROWS[0], *BROWS[1], *EYES[0], *EYES[1]]]
    margin = EYES_BOX_MARGIN * np.linalg.norm(landmarks[:, 45] - landmarks[:, 36], axis=1, keepdims=True)
    return np.concatenate([points.min(axis=1) - margin, points.max(axis=1) + margin], axis=1).astype(np.float32)


def plate_warps(affines: Float[np.ndarray, "frames 2 3"], reference: Float[np.ndarray, "train_frames 2 3"],
                image_size: int) -> Float[np.ndarray, "frames 2 3"]:
    """A_i·Ā⁻¹ per frame, translation divided by `image_size`: the map from the plate's reference frame (the aligned
    frame under Ā, the mean of the `reference` frames' original → aligned similarities, itself a similarity) to
    frame i. The backdrop is static in the original video, so frame i shows plate point q at A_i·Ā⁻¹·q."""
    inverse = invert_affine(reference.astype(np.float64).mean(axis=0))
    linear = affines[:, :, :2].astype(np.float64) @ inverse[:, :2]  # [N, 2, 2]
    shift = (affines[:, :, :2] @ inverse[:, 2:] + affines[:, :, 2:]) / image_size  # [N, 2, 1]
    return np.concatenate([linear, shift], axis=2).astype(np.float32)


def box_mask(boxes: Float[Tensor, "batch 4"], size: int) -> Bool[Tensor, "batch 1 size size"]:
    """Pixels whose centres lie inside each box (pixel centres at +0.5)."""
    centres = torch.arange(size, device=boxes.device, dtype=boxes.dtype) + 0.5
    inside_x = (centres >= boxes[:, 0:1]) & (centres < boxes[:, 2:3])  # [B, size]
    inside_y = (centres >= boxes[:, 1:2]) & (centres < boxes[:, 3:4])
    return (inside_y[:, :, None] & inside_x[:, None, :])[:, None]


def audio_context(features: Float[Tensor, "frames 16 dim"], indices: Int[Tensor, " batch"],
                  context: int = AUDIO_CONTEXT) -> Float[Tensor, "batch context 16 dim"]:
    """Windows of frames t − context/2 … t + context/2 − 1 for each t, zero outside the clip."""
    offsets = torch.arange(context, device=indices.device) - context // 2
    positions = indices[:, None] + offsets  # [B, context]
    valid = (positions >= 0) & (positions < features.shape[0])
    gathered = features[positions.clamp(0, features.shape[0] - 1)]  # [B, context, 16, D]
    return gathered * valid[..., None, None].to(gathered.dtype)


def lip_frames(clip: ClipData, positions: Int[Tensor, " batch"]) -> LipFrames:
    """The lip regression's view of frames `positions` of `clip`: audio windows and tracked mouth shapes."""
    indices = clip.indices[positions]
    return LipFrames(indices, audio_context(clip.audio_features, indices), clip.mouth_shapes[positions])


def to_signed(images: UInt8[Tensor, "batch 3 height width"]) -> Float[Tensor, "batch 3 height width"]:
    """uint8 [0, 255] → float [-1, 1]."""
    return images.float() / 127.5 - 1.0


def to_uint8(image: Float[Tensor, "3 height width"]) -> UInt8[np.ndarray, "height width 3"]:
    """[-1, 1] CHW → uint8 HWC (the inverse of `to_signed` for one image)."""
    return ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def make_batch(clip: ClipData, positions: Int[Tensor, " batch"], raw_size: int) -> FrameBatch:
    """Assemble the frames at `positions` (rows of `clip`) on the clip's device."""
    images = to_signed(clip.frames[positions])
    size = images.shape[-1]
    images_raw = F.interpolate(images, size=(raw_size, raw_size), mode="area") if raw_size != size else images
    lower = (clip.parsing[positions] == LOWER_FACE_LABEL).float()
    lower_raw = F.interpolate(lower, size=(raw_size, raw_size), mode="area") > 0.5
    background = F.interpolate((clip.parsing[positions] == BACKGROUND_LABEL).float(), size=(raw_size, raw_size),
                               mode="area")  # [B, 1, raw, raw]: background share of each footprint
    cameras = Cameras(clip.cam2world[positions], clip.intrinsics[positions], size, size)
    conditions = Conditions(audio=audio_context(clip.audio_features, clip.indices[positions]),
                            eye=clip.eye[positions], angles=clip.angles[positions],
                            landmarks=clip.landmarks[positions])
    return FrameBatch(indices=clip.indices[positions], images=images, images_raw=images_raw, lower_face=lower_raw,
                      background=background > 0.999, person=1 - background, plate_warp=clip.plate_warps[positions],
                      face_points=clip.face_points[positions],
                      face_point_valid=clip.face_point_valid[positions],
                      face_point_colour=clip.face_point_colour[positions], mouth_shape=clip.mouth_shapes[positions],
                      mouth_box=box_mask(clip.mouth_boxes[positions], size),
                      face_box=box_mask(clip.face_boxes[positions], size),
                      eyes_box=box_mask(clip.eyes_boxes[positions], size),
                      cameras=cameras, conditions=conditions)
