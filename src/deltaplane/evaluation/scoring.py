"""Stream frames through the face tracker, the identity embedders, the Inception sampler and the pixel metrics, and
summarise them as flat metric dictionaries (keys documented in `deltaplane.evaluation.keys`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from numpy import ndarray
from tqdm import tqdm

from deltaplane.evaluation.face import (MOUTH_CROP_SIZE, SAME_PERSON_THRESHOLD, IdentityEmbedder, detail_crops,
                                        face_mask, mouth_crop, mouth_landmark_distance, mouth_motion, mouth_opening,
                                        mouth_shape_offset, region_masks)
from deltaplane.evaluation.fid import InceptionSampler, fid_metrics
from deltaplane.evaluation.pixels import (SsimWorkspace, detail_scores, error_map, frame_scores, laplacian_variance,
                                         lpips_distance, region_scores)
from deltaplane.evaluation.sync import MIN_SYNC_FRAMES, landmark_sync, speech_envelope, syncnet_crop
from deltaplane.errors import InputError
from deltaplane.geometry.face_depth import FACE_VERTICES
from deltaplane.metrics.arcface import EMBEDDING_DIM, IResNet, align_face, arcface_embeddings, load_arcface
from deltaplane.metrics.fid import FIDInceptionV3, load_inception
from deltaplane.metrics.lpips import LPIPS
from deltaplane.metrics.syncnet import VIDEO_FPS, SyncNetV2, lse_scores
from deltaplane.preprocess.landmarks import FaceTracker, eye_openness


@dataclass(frozen=True)
class EvaluationConfig:
    """What `deltaplane evaluate` measures and how densely."""

    identity_every: int = 10
    """The identity embedding (dlib ResNet, ~95 ms per face on one core) runs on every k-th frame of each video."""
    max_sync_offset: int = 10
    """The landmark sync score searches audio-video offsets up to this many frames both ways."""
    strip_frames: int = 4
    """Frames shown in the report's GT | render | error strip (evenly spaced)."""
    lpips_weights: Path | None = None
    """LPIPS weights (file or directory, see `metrics.lpips.load_lpips`); without them LPIPS is skipped."""
    lpips_every: int = 1
    """LPIPS runs on every k-th frame (AlexNet on a 512² pair takes ~0.5–1 s on a 2-core CPU)."""
    syncnet_v2: Path | None = None
    """syncnet_python's `syncnet_v2.model`; without it LSE-C / LSE-D are skipped."""
    inception: Path | None = None
    """pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`; without it FID is skipped."""
    fid_every: int = 1
    """FID takes the Inception features of every k-th frame (~0.15 s per frame at 299² on a 2-core CPU)."""
    arcface: Path | None = None
    """An insightface arcface_torch `backbone.pth` (IResNet 18/34/50/100); without it id_arcface is skipped."""
    mouth_sheet_frames: int = 16
    """Mouth crops per row of the report's contact sheet (every k-th frame, k = ⌈frames / this⌉)."""

    def mouth_every(self, num_frames: int) -> int:
        """k of the contact sheet for a video of `num_frames` frames."""
        return max(1, math.ceil(num_frames / self.mouth_sheet_frames))


@dataclass(frozen=True)
class Experts:
    """The weight-based metrics that could be loaded, and why the others are skipped."""

    lpips: LPIPS | None
    syncnet: SyncNetV2 | None
    inception: FIDInceptionV3 | None
    arcface: IResNet | None
    skipped: dict[str, str]


def load_experts(config: EvaluationConfig, device: torch.device) -> Experts:
    """Load LPIPS / SyncNet v2 / FID Inception / ArcFace from the given paths (a given path that cannot be loaded is
    an error)."""
    skipped: dict[str, str] = {}
    lpips = syncnet = inception = arcface = None
    if config.lpips_weights is None:
        skipped["lpips"] = "no LPIPS weights given (--lpips-weights)"
    else:
        from deltaplane.metrics.lpips import load_lpips

        lpips = load_lpips(config.lpips_weights).to(device)
    if config.syncnet_v2 is None:
        for key in ("sync/lse_c", "sync/lse_d"):
            skipped[key] = "no SyncNet weights given (--syncnet-v2 syncnet_v2.model)"
    else:
        from deltaplane.metrics.syncnet import load_syncnet_v2

        syncnet = load_syncnet_v2(config.syncnet_v2).to(device)
    if config.inception is None:
        skipped["fid"] = "no Inception weights given (--inception pt_inception-2015-12-05-6726825d.pth)"
    else:
        inception = load_inception(config.inception).to(device)
    if config.arcface is None:
        skipped["id_arcface"] = "no ArcFace weights given (--arcface backbone.pth)"
    else:
        arcface = load_arcface(config.arcface).to(device)
    return Experts(lpips, syncnet, inception, arcface, skipped)


@dataclass(frozen=True)
class VideoTrack:
    """What the evaluation kept of one video: per-frame face observations (NaN rows where there was no face) and
    Inception features of the sampled frames."""

    landmarks: Float[ndarray, "frames 68 2"]
    embeddings: Float[ndarray, "frames 128"]
    """dlib identity descriptors on every `identity_every`-th frame; NaN on the others."""
    arcface: Float[ndarray, "frames 512"] | None
    """Unit ArcFace embeddings on the same frames as `embeddings` (NaN on the others), when an ArcFace is loaded."""
    crops: UInt8[ndarray, "frames 224 224 3"] | None
    """SyncNet face crops, when a SyncNet is loaded."""
    inception: Float[ndarray, "samples 2048"] | None
    """Inception pool features of every `fid_every`-th frame, when an Inception is loaded."""
    mouth_crops: tuple[tuple[int, UInt8[ndarray, "96 96 3"]], ...] = ()
    """(frame index, mouth crop) of every k-th frame for the contact sheet (black where there was no face)."""
    sharpness: Float[ndarray, " frames"] | None = None
    """`pixels.laplacian_variance` inside the frame's own face hull (NaN without a face)."""
    detected: Bool[ndarray, " frames"] | None = None
    """Whether the face detector, run on the frame alone, finds the tracked face (`observe_video` only)."""
    mesh: Float[ndarray, "frames 468 2"] | None = None
    """The tracked face mesh's points (x, y) in pixels (NaN without a face)."""

    @property
    def found(self) -> np.ndarray:
        return np.isfinite(self.landmarks[:, 0, 0])

    def per_frame(self, measure: Callable[[ndarray], float]) -> Float[ndarray, " frames"]:
        """`measure(landmarks68)` on frames with a face, NaN elsewhere."""
        return np.array([measure(points) if ok else math.nan for points, ok in zip(self.landmarks, self.found)])


class VideoObserver:
    """Tracks one video frame by frame and keeps landmarks, identity embeddings and, with the experts loaded,
    SyncNet crops and Inception features."""

    def __init__(self, embedder: IdentityEmbedder, config: EvaluationConfig, experts: Experts,
                 keep_crops: bool, mouth_every: int = 0, detect: bool = False) -> None:
        self._tracker = FaceTracker()
        self._detected: list[bool] | None = [] if detect else None
        self._mouth_every = mouth_every
        self._mouth_crops: list[tuple[int, ndarray]] = []
        self._embedder, self._identity_every, self._keep_crops = embedder, config.identity_every, keep_crops
        self._arcface_model = experts.arcface
        self._inception = None if experts.inception is None else InceptionSampler(experts.inception, config.fid_every)
        self._landmarks: list[ndarray] = []
        self._embeddings: list[ndarray] = []
        self._arcface: list[ndarray] = []
        self._crops: list[ndarray] = []
        self._last_box: ndarray | None = None
        self._sharpness: list[float] = []
        self._mesh: list[ndarray] = []

    def observe(self, rgb: UInt8[ndarray, "height width 3"]) -> Float[ndarray, "68 2"] | None:
        """Track one frame; returns its 68 landmarks (None without a face)."""
        index = len(self._landmarks)
        observation = self._tracker.track(rgb)
        nan = np.full((68, 2), np.nan, np.float32)
        self._landmarks.append(nan if observation is None else observation.landmarks68)
        self._mesh.append(np.full((FACE_VERTICES, 2), np.nan, np.float32) if observation is None
                          else observation.mesh[:FACE_VERTICES, :2])
        embedding = np.full(128, np.nan, np.float32)
        arcface = np.full(EMBEDDING_DIM, np.nan, np.float32)
        if observation is not None and index % self._identity_every == 0:
            embedding = self._embedder.embed(rgb, observation.mesh)
            if self._arcface_model is not None:
                arcface = arcface_embeddings(self._arcface_model, align_face(rgb, observation.landmarks68)[None])[0]
        self._embeddings.append(embedding)
        self._arcface.append(arcface)
        if self._inception is not None:
            self._inception.observe(rgb)
        if observation is not None:
            self._last_box = observation.box
        if self._detected is not None:
            self._detected.append(observation is not None and any(
                _centre_inside(box, observation.box) for box in self._tracker.detect(rgb)))
        self._sharpness.append(math.nan if observation is None else
                               laplacian_variance(rgb, face_mask(observation.landmarks68, *rgb.shape[:2])))
        if self._mouth_every and index % self._mouth_every == 0:
            crop = (np.zeros((MOUTH_CROP_SIZE, MOUTH_CROP_SIZE, 3), np.uint8) if observation is None
                    else mouth_crop(rgb, observation.landmarks68))
            self._mouth_crops.append((index, crop))
        if self._keep_crops:  # without a face: the last box seen, or the whole frame
            whole = np.array([0, 0, rgb.shape[1], rgb.shape[0]], np.float32)
            self._crops.append(syncnet_crop(rgb, whole if self._last_box is None else self._last_box))
        return None if observation is None else observation.landmarks68

    def finish(self) -> VideoTrack:
        return VideoTrack(np.stack(self._landmarks), np.stack(self._embeddings),
                          np.stack(self._arcface) if self._arcface_model is not None else None,
                          np.stack(self._crops) if self._keep_crops else None,
                          None if self._inception is None else self._inception.finish(), tuple(self._mouth_crops),
                          np.array(self._sharpness), None if self._detected is None else np.array(self._detected, bool),
                          np.stack(self._mesh))

    def __enter__(self) -> VideoObserver:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._tracker.close()


@dataclass(frozen=True)
class PairResult:
    """Per-frame results of a prediction scored against its ground truth."""

    prediction: VideoTrack
    target: VideoTrack
    per_frame: dict[str, Float[ndarray, " frames"]]
    strip: list[tuple[int, ndarray, ndarray, ndarray]]
    """(frame index, GT, prediction, error map) for the report."""
    detail_rows: list[tuple[str, tuple[tuple[int, ndarray], ...]]]
    """Labelled rows of (frame index, crop) of the strip frames: eyes, mouth and hair of the ground truth, each
    above the render's crop at the same place (`face.detail_crops` at the ground truth's landmarks)."""
    width: int
    """Width of the ground truth's frames, at which both videos' landmarks are (predictions are resized to it)."""


def strip_indices(num_frames: int, count: int) -> set[int]:
    return {int(index) for index in np.linspace(0, max(num_frames - 1, 0), min(count, num_frames)).round()}


def score_pair(predictions: Iterable[ndarray], targets: Iterable[ndarray], num_frames: int,
               config: EvaluationConfig, experts: Experts, embedder: IdentityEmbedder,
               progress: bool = False, desc: str = "evaluate") -> PairResult:
    """Score predicted frames against target frames (zip: the shorter one sets the length); predictions are resized
    to the target's size."""
    shown = strip_indices(num_frames, config.strip_frames)
    series: dict[str, list[float]] = {name: [] for name in ("psnr", "ssim", "psnr_face", "ssim_face", "psnr_eyes",
                                                            "bias_eyes", "psnr_mouth", "bias_mouth", "psnr_torso",
                                                            "bias_torso", "lmd",
                                                            "sharpness_ratio", "detail_psnr_1", "detail_psnr_2",
                                                            "detail_gain_1", "detail_gain_2")}
    details: dict[str, list[tuple[int, ndarray]]] = {}
    if experts.lpips is not None:
        series["lpips"] = []
    strip = []
    workspace: SsimWorkspace | None = None
    mouth_every = config.mouth_every(num_frames)
    with (VideoObserver(embedder, config, experts, experts.syncnet is not None, mouth_every) as predicted,
          VideoObserver(embedder, config, experts, False, mouth_every) as truth):
        pairs = tqdm(zip(predictions, targets), total=num_frames, disable=not progress, desc=desc, unit="frame")
        for index, (prediction, target) in enumerate(pairs):
            if prediction.shape != target.shape:
                prediction = cv2.resize(prediction, (target.shape[1], target.shape[0]), interpolation=cv2.INTER_AREA)
            target_points = truth.observe(target)
            prediction_points = predicted.observe(prediction)
            face = None if target_points is None else face_mask(target_points, *target.shape[:2])
            if workspace is None or workspace.shape != target.shape:
                workspace = SsimWorkspace(target.shape)
            scores = {**frame_scores(prediction, target, face, workspace), **detail_scores(prediction, target, face)}
            if target_points is not None:
                scores.update(region_scores(prediction, target, region_masks(target_points, *target.shape[:2])))
            if experts.lpips is not None and index % config.lpips_every == 0:
                scores["lpips"] = lpips_distance(experts.lpips, prediction, target)
            if target_points is not None and prediction_points is not None:
                scores["lmd"] = mouth_landmark_distance(prediction_points, target_points, target.shape[1])
            for name, values in series.items():
                values.append(scores.get(name, math.nan))
            if index in shown:
                strip.append((index, target, prediction, error_map(prediction, target)))
                if target_points is not None:
                    for source, image in (("ground truth", target), ("render", prediction)):
                        for region, crop in detail_crops(image, target_points).items():
                            details.setdefault(f"{source} {region}", []).append((index, crop))
        rows = [(label, tuple(details[label])) for region in ("eyes", "mouth", "hair")
                for label in (f"ground truth {region}", f"render {region}") if label in details]
        return PairResult(predicted.finish(), truth.finish(), {k: np.array(v) for k, v in series.items()}, strip,
                          rows, 0 if workspace is None else workspace.shape[1])


def _centre_inside(box: Float[ndarray, "4"], other: Float[ndarray, "4"]) -> bool:
    """Whether the centre of `box` lies in `other` (x0, y0, x1, y1)."""
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bool(other[0] <= x <= other[2] and other[1] <= y <= other[3])


def observe_video(frames: Iterable[ndarray], num_frames: int, config: EvaluationConfig, experts: Experts,
                  embedder: IdentityEmbedder, progress: bool = False, desc: str = "track") -> VideoTrack:
    """Track one video without a ground truth (other camera views, other audio), and run the face detector on every
    frame alone (`face_counts`)."""
    with VideoObserver(embedder, config, experts, experts.syncnet is not None,
                       config.mouth_every(num_frames), detect=True) as observer:
        for frame in tqdm(frames, total=num_frames, disable=not progress, desc=desc, unit="frame"):
            observer.observe(frame)
        return observer.finish()


def face_counts(track: VideoTrack) -> dict[str, int | float]:
    """faces/missing (frames the tracker has no face in) and, where every frame also went through the detector
    alone, faces/detected (the share of frames in which it finds the tracked face). The tracker follows a face from
    one detection on, through frames on which no detector would find it, so the two can differ widely: a render
    that looks like a face in every frame scores 1 on the second."""
    counts: dict[str, int | float] = {"faces/missing": int((~track.found).sum())}
    if track.detected is not None and track.detected.size:
        counts["faces/detected"] = float(track.detected.mean())
    return counts


def _mean(values: ndarray) -> float | None:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else None


def identity_metrics(prediction: VideoTrack, descriptors: Float[ndarray, "frames 128"],
                     arcface: Float[ndarray, "frames 512"] | None, every: int) -> tuple[dict, dict]:
    """id_distance (dlib descriptor distance), id_same_person (fraction under dlib's 0.6), id_frames, id_every and,
    with ArcFace embeddings on both sides, id_arcface (mean cosine similarity) of the prediction's sampled frames
    against reference rows (one per frame; NaN rows are left out)."""
    count = min(prediction.embeddings.shape[0], descriptors.shape[0])
    distances = np.linalg.norm(prediction.embeddings[:count] - descriptors[:count], axis=1)
    finite = distances[np.isfinite(distances)]
    reason = "no frame with a face in both videos among the sampled frames"
    if not finite.size:
        metrics, skipped = {}, {"id_distance": reason}
    else:
        metrics = {"id_distance": float(finite.mean()),
                   "id_same_person": float((finite < SAME_PERSON_THRESHOLD).mean()),
                   "id_frames": int(finite.size), "id_every": every}
        skipped = {}
    if prediction.arcface is not None and arcface is not None:
        reference = arcface[:count] / np.linalg.norm(arcface[:count], axis=1, keepdims=True)
        similarities = (prediction.arcface[:count] * reference).sum(1)  # both unit length: cosine similarity
        finite = similarities[np.isfinite(similarities)]
        if finite.size:
            metrics["id_arcface"] = float(finite.mean())
        else:
            skipped["id_arcface"] = reason
    return metrics, skipped


def pair_metrics(result: PairResult, config: EvaluationConfig) -> tuple[dict, dict]:
    """Flat metrics (and skipped reasons) of a scored pair: pixels, LMD, blink error, identity, face counts."""
    metrics: dict = {"frames": int(result.per_frame["psnr"].shape[0])}
    skipped: dict[str, str] = {}
    for name, values in result.per_frame.items():
        value = _mean(values)
        if value is None:
            skipped[name] = "no frame with a face in both videos" if name == "lmd" else "no face in the ground truth"
        else:
            metrics[name] = value
    if "lpips" in metrics:
        metrics["lpips_every"] = config.lpips_every
    found, reasons = eye_metrics(result.prediction.per_frame(eye_openness), result.target.per_frame(eye_openness))
    metrics.update(found)
    skipped.update(reasons)
    for found, reasons in (identity_metrics(result.prediction, result.target.embeddings, result.target.arcface,
                                            config.identity_every),
                           fid_metrics(result.prediction.inception, result.target.inception, config.fid_every)):
        metrics.update(found)
        skipped.update(reasons)
    found, reasons = motion_metrics(result.prediction, result.target)
    metrics.update(found)
    skipped.update(reasons)
    split = mouth_shape_offset(result.prediction.landmarks, result.target.landmarks, result.width)
    if split is None:
        skipped.update(dict.fromkeys(("lmd_offset", "lmd_motion"), "no frame with a face in both videos"))
    else:
        metrics["lmd_offset"], metrics["lmd_motion"] = split
    metrics["faces/missing_pred"] = int((~result.prediction.found).sum())
    metrics["faces/missing_gt"] = int((~result.target.found).sum())
    return metrics, skipped


def eye_metrics(predicted: Float[ndarray, " frames"], truth: Float[ndarray, " frames"]) -> tuple[dict, dict]:
    """blink_error, and whether the eyes move as the truth's do (NaN: no face in that frame): eyes/openness_std_ratio,
    the render's std over frames of the eye aspect ratio over the truth's (a render that never blinks scores far
    under 1 with a small blink_error), and eyes/openness_correlation, over the frames with a face in both."""
    both = np.isfinite(predicted) & np.isfinite(truth)
    if not both.any():
        reason = "no frame with a face in both videos"
        return {}, dict.fromkeys(("blink_error", "eyes/openness_std_ratio", "eyes/openness_correlation"), reason)
    ours, theirs = predicted[both], truth[both]
    metrics = {"blink_error": float(np.abs(ours - theirs).mean())}
    skipped = {}
    if both.sum() < 3 or theirs.std() == 0:
        skipped["eyes/openness_std_ratio"] = skipped["eyes/openness_correlation"] = "the truth's eyes do not move"
        return metrics, skipped
    metrics["eyes/openness_std_ratio"] = float(ours.std() / theirs.std())
    if ours.std() == 0:
        skipped["eyes/openness_correlation"] = "the prediction's eyes do not move"
    else:
        metrics["eyes/openness_correlation"] = float(np.corrcoef(ours, theirs)[0, 1])
    return metrics, skipped


def sharpness_metrics(track: VideoTrack, reference: VideoTrack) -> tuple[dict, dict]:
    """sharpness_ratio of a render without a ground truth at its view, against a reference render (the frontal
    render of the split): each in its own face hull, frame by frame when both show the same frames, else the ratio
    of the means."""
    ours, theirs = track.sharpness, reference.sharpness
    if ours is not None and theirs is not None and ours.shape == theirs.shape:
        ratio = _mean(ours / np.where(theirs > 0, theirs, np.nan))
    elif ours is not None and theirs is not None:
        mine, reference_mean = _mean(ours), _mean(theirs)
        ratio = None if mine is None or not reference_mean else mine / reference_mean
    else:
        ratio = None
    if ratio is None:
        return {}, {"sharpness_ratio": "no face in this render or in the frontal render"}
    return {"sharpness_ratio": ratio}, {}


def motion_metrics(track: VideoTrack, reference: VideoTrack) -> tuple[dict, dict]:
    """mouth/… scores of a video's mouth opening against a reference video's (`evaluation.face.mouth_motion`)."""
    return mouth_motion(track.per_frame(mouth_opening), reference.per_frame(mouth_opening))


def sync_metrics(track: VideoTrack, samples: Float[ndarray, " samples"] | None, fps: float,
                 config: EvaluationConfig, syncnet: SyncNetV2 | None) -> tuple[dict, dict]:
    """sync/correlation and sync/offset_frames (landmarks vs speech envelope), and LSE-C/D with a SyncNet."""
    if samples is None:
        reason = "no audio (the video has no audio stream; pass --audio)"
        return {}, {key: reason for key in ("sync/correlation", "sync/offset_frames", "sync/lse_c", "sync/lse_d")}
    metrics: dict = {}
    skipped: dict[str, str] = {}
    num_frames = track.landmarks.shape[0]
    score = landmark_sync(track.per_frame(mouth_opening), speech_envelope(samples, num_frames, fps),
                          config.max_sync_offset)
    if score is None:
        reason = f"{int(track.found.sum())} frames with a face; the sync score needs {MIN_SYNC_FRAMES}"
        skipped["sync/correlation"] = skipped["sync/offset_frames"] = reason
    else:
        metrics["sync/correlation"], metrics["sync/offset_frames"] = score.correlation, score.offset
    if syncnet is not None and track.crops is not None and fps != VIDEO_FPS:
        skipped["sync/lse_c"] = skipped["sync/lse_d"] = f"SyncNet works at {VIDEO_FPS} fps, the video has {fps:g}"
    elif syncnet is not None and track.crops is not None:
        try:
            lse = lse_scores(syncnet, torch.from_numpy(track.crops).permute(0, 3, 1, 2), torch.from_numpy(samples))
        except InputError as error:
            skipped["sync/lse_c"] = skipped["sync/lse_d"] = str(error)
        else:
            metrics.update({"sync/lse_c": lse.lse_c, "sync/lse_d": lse.lse_d, "sync/lse_offset_frames": lse.offset})
    return metrics, skipped


def prefixed(prefix: str, metrics: dict) -> dict:
    return {f"{prefix}{key}": value for key, value in metrics.items()}
