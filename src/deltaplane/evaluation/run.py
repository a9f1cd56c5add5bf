"""`deltaplane evaluate RUN_DIR`: render a dataset split with its own audio and cameras and score it against its
frames (`test/…`), render the same audio from other cameras (`view/NAME/…`: identity and FID vs the split's frames,
sync, mouth motion), and optionally render other audio (`cross/NAME/…` per file of --audio FILE or FOLDER: sync,
mouth motion against the split's frames, identity vs the split's mean face descriptor, FID).
Each rendered view is saved as it streams past, as `videos/NAME.mp4` with its audio (watermarked and labelled
synthetic like `deltaplane render`'s output; the scores use the unmarked frames)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from jaxtyping import Bool, Float
from numpy import ndarray

from deltaplane import watermark
from deltaplane.atomic import atomic_dir, created_dir
from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.audio.io import audio_files, load_audio
from deltaplane.data.dataset import BACKGROUND_LABEL, ClipData, audio_context, load_clip
from deltaplane.data.schema import AUDIO_WAV, read_manifest
from deltaplane.errors import InputError
from deltaplane.evaluation.face import IdentityEmbedder, mesh_view_metrics
from deltaplane.evaluation.fid import fid_metrics
from deltaplane.evaluation.pixels import background_change, background_flicker, far_background, small_grey
from deltaplane.evaluation.report import ReportData
from deltaplane.evaluation.scoring import (EvaluationConfig, Experts, PairResult, VideoTrack, face_counts,
                                           identity_metrics, load_experts, motion_metrics, observe_video, pair_metrics,
                                           prefixed, score_pair, sharpness_metrics, sync_metrics)
from deltaplane.evaluation.videos import notes, write_outputs
from deltaplane.geometry.cameras import Cameras
from deltaplane.geometry.face_depth import FACE_VERTICES
from deltaplane.geometry.novel_view import rigid_mesh_in_view
from deltaplane.inference import (RenderOverrides, audio_windows, camera_path, check_camera, depth_to_uint8,
                                  describe_rendering, driving_conditions, load_run, plate_warp_path, render_clip,
                                  to_uint8)
from deltaplane.media.video import VideoWriter, output_frame_count
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.preprocess.av_sync import describe_offset
from deltaplane.structs import Conditions

DEFAULT_VIEWS = "dataset,front,yaw=±30,pitch=±20,spiral"
VIDEOS_DIR = "videos"
"""Rendered views are saved as METRICS_DIR/videos/NAME.mp4: `dataset` (the split), the other views, `cross`."""
_ANGLE_VIEW = re.compile(r"^(?P<axis>yaw|pitch)=(?P<sign>±|\+-|[-+]?)(?P<degrees>\d+(\.\d*)?)$")


def parse_views(spec: str) -> dict[str, str]:
    """View name → camera spec of `inference.camera_path`. Items: dataset, front, orbit, spiral, yaw=DEG, pitch=DEG
    (a ± sign gives both); 'yaw=+30' is named 'yaw+30' and rendered from yaw 30°, pitch 0."""
    views: dict[str, str] = {}
    for item in (part.strip().replace(" ", "") for part in spec.split(",")):
        if item in ("dataset", "front", "orbit", "spiral"):
            views[item] = item
        elif match := _ANGLE_VIEW.match(item):
            signs = ("+", "-") if match["sign"] in ("±", "+-") else (match["sign"] or "+",)
            for sign in signs:
                degrees = float(sign + match["degrees"])
                yaw, pitch = (degrees, 0.0) if match["axis"] == "yaw" else (0.0, degrees)
                views[f"{match['axis']}{sign}{match['degrees']}"] = f"yaw={yaw:g},pitch={pitch:g}"
                check_camera(views[f"{match['axis']}{sign}{match['degrees']}"])
        elif item:
            raise InputError(f"unknown view {item!r} in --views; use dataset, front, orbit, spiral, yaw=±DEG or "
                             "pitch=±DEG, separated by commas")
    return views


@dataclass(frozen=True)
class SavedVideos:
    """Where the rendered views are written, and the container tags they carry."""

    directory: Path
    """METRICS_DIR/videos."""
    tags: dict[str, str]
    """mp4 container tags (`deltaplane.api` labels every output synthetic)."""

    def writer(self, name: str, fps: float, audio: Float[ndarray, " samples"]) -> VideoWriter:
        """An H.264 + AAC writer for view `name`; the file appears when its `with` block ends without error."""
        return VideoWriter(self.directory / f"{name}.mp4", fps, audio=audio,
                           metadata=dict(self.tags, title=f"deltaplane evaluation ({name})"))


def _writer(videos: SavedVideos | None, name: str, fps: float,
            audio: ndarray) -> AbstractContextManager[VideoWriter | None]:
    return contextlib.nullcontext() if videos is None else videos.writer(name, fps, audio)


@dataclass
class _Kept:
    """What the rendered views leave for the background measures and the report, by view name."""

    middle: dict[str, ndarray] = field(default_factory=dict)
    """The middle RGB frame."""
    depth: dict[str, ndarray] = field(default_factory=dict)
    """The middle frame's depth (near = white)."""
    grey: dict[str, list[ndarray]] = field(default_factory=dict)
    """Every frame as `pixels.small_grey` (camera views only: the background measures compare them)."""
    spaced: dict[str, list[tuple[int, ndarray]]] = field(default_factory=dict)
    """SPACED_FRAMES evenly spaced (index, RGB frame) pairs (for the spiral's row of the view sheet)."""


SPACED_FRAMES = 6


def _rendered(model: TriplaneTalker, conditions: Conditions, cam2world: torch.Tensor,
              kept: _Kept, name: str, writer: VideoWriter | None, grey: bool = True,
              plate_warp: torch.Tensor | None = None) -> Iterator[ndarray]:
    """Rendered uint8 frames, each also encoded into `writer` (watermarked) as it is yielded; `kept` records what
    the measures and the report need (with `grey`, every frame for the background measures). `plate_warp`: the
    dataset frames' plate placement when `cam2world` replays them (`inference.render_clip`)."""
    count = cam2world.shape[0]
    spaced = {int(i) for i in np.linspace(0, count - 1, min(SPACED_FRAMES, count)).round()}
    volume, size = model.config.volume, model.config.output_resolution
    kept.spaced[name] = []
    if grey:
        kept.grey[name] = []
    for index, (rgb, depth) in enumerate(render_clip(model, conditions, cam2world, plate_warp=plate_warp)):
        frame = to_uint8(rgb)
        if index == count // 2:
            kept.middle[name] = frame
            kept.depth[name] = depth_to_uint8(depth, volume.near, volume.far, size)
        if index in spaced:
            kept.spaced[name].append((index, frame))
        if grey:
            kept.grey[name].append(small_grey(frame))
        if writer is not None:
            writer.write(watermark.embed(frame))
        yield frame


def _split_audio(dataset: Path, indices: Iterable[int], fps: float) -> ndarray:
    """The dataset audio under the split's frames (frame k covers [k, k + 1) / fps)."""
    samples = load_audio(dataset / AUDIO_WAV)
    hop = SAMPLE_RATE / fps
    return np.concatenate([samples[round(index * hop):round((index + 1) * hop)] for index in indices])


def _mean_rows(rows: Float[ndarray, "frames dim"] | None, num_frames: int) -> Float[ndarray, "frames dim"] | None:
    """The mean of the finite rows, repeated for `num_frames` frames (NaN rows when there is none)."""
    if rows is None:
        return None
    known = rows[np.isfinite(rows).all(1)]
    mean = known.mean(0) if known.shape[0] else np.full(rows.shape[1], np.nan, np.float32)
    return np.broadcast_to(mean, (num_frames, rows.shape[1]))


def _unpaired_metrics(track: VideoTrack, target: VideoTrack, frontal: VideoTrack, samples: ndarray, fps: float,
                      config: EvaluationConfig, experts: Experts, mean_identity: bool = False) -> tuple[dict, dict]:
    """A render without a frame-by-frame ground truth: identity against the split's frames (frame by frame, or
    their mean descriptor when the audio differs), FID against them, sync, mouth motion against theirs, sharpness
    against the `frontal` render of the split, and frames without a face."""
    num_frames = track.landmarks.shape[0]
    descriptors, arcface = target.embeddings, target.arcface
    if mean_identity:
        descriptors, arcface = _mean_rows(descriptors, num_frames), _mean_rows(arcface, num_frames)
    metrics, skipped = identity_metrics(track, descriptors, arcface, config.identity_every)
    for found, reasons in (fid_metrics(track.inception, target.inception, config.fid_every),
                           sync_metrics(track, samples, fps, config, experts.syncnet),
                           motion_metrics(track, target), sharpness_metrics(track, frontal)):
        metrics.update(found)
        skipped.update(reasons)
    metrics.update(face_counts(track))
    return metrics, skipped


def _load_driving_audio(files: dict[str, Path], fps: float) -> dict[str, ndarray]:
    """Decode every driving file before any rendering, so that a bad file fails before the work starts."""
    loaded = {}
    for name, path in files.items():
        loaded[name] = load_audio(path)
        if output_frame_count(loaded[name].shape[0] / SAMPLE_RATE, fps) < 1:
            raise InputError(f"{path} is too short to render a frame")
    return loaded


def _cross_metrics(model: TriplaneTalker, run_config: dict, driving, name: str, samples: ndarray, fps: float,
                   target: VideoTrack, frontal: VideoTrack, config: EvaluationConfig, experts: Experts,
                   embedder: IdentityEmbedder, kept: _Kept, videos: SavedVideos | None, progress: bool
                   ) -> tuple[dict, dict, VideoTrack]:
    """The run driven by other audio with the training video's tokens and cameras: sync, mouth motion against the
    split's frames, identity against their mean descriptor, FID against them."""
    num_frames = output_frame_count(samples.shape[0] / SAMPLE_RATE, fps)
    conditions, _ = driving_conditions(audio_windows(run_config, samples, num_frames, fps), driving, neutral=False)
    view = f"cross_{name}"
    with _writer(videos, view, fps, samples) as writer:
        frames = _rendered(model, conditions, camera_path("dataset", num_frames, driving), kept, view, writer,
                           grey=False, plate_warp=plate_warp_path("dataset", num_frames, driving))
        track = observe_video(frames, num_frames, config, experts, embedder, progress, desc=f"cross {name}")
    return (*_unpaired_metrics(track, target, frontal, samples, fps, config, experts, mean_identity=True), track)


@dataclass(frozen=True)
class SplitMesh:
    """A split's tracked face meshes and cameras at the renders' size, for `view/NAME/mesh/…`."""

    points: Float[torch.Tensor, "frames 468 3"]
    valid: Bool[torch.Tensor, "frames 468"]
    cameras: Cameras

    @classmethod
    def of(cls, clip: ClipData, size: int) -> SplitMesh:
        """`clip` loaded at `size`² (`data.dataset.load_clip`)."""
        return cls(clip.face_points[:, :FACE_VERTICES], clip.face_point_valid[:, :FACE_VERTICES],
                   Cameras(clip.cam2world, clip.intrinsics, size, size))

    def metrics(self, track: VideoTrack, cam2world: Float[torch.Tensor, "frames 4 4"]) -> tuple[dict, dict]:
        """`face.mesh_view_metrics` of a view rendered from `cam2world`, frame i driven by the split's frame i."""
        expected = rigid_mesh_in_view(self.points, self.valid, self.cameras, cam2world.to(self.points))
        return mesh_view_metrics(track.mesh, expected.numpy(), self.valid.numpy())


def _score_split(model: TriplaneTalker, dataset: Path, split: str, config: EvaluationConfig, experts: Experts,
                 embedder: IdentityEmbedder, kept: _Kept, videos: SavedVideos | None, progress: bool
                 ) -> tuple[PairResult, Conditions, ndarray, float, Bool[ndarray, "frames s s"], SplitMesh]:
    """Render the split with its own audio windows, tokens, cameras and plate warps (computed against the training
    split's mean alignment, as the plate is) and score it against its frames; also the far background of its frames
    (`pixels.far_background`) and its tracked meshes."""
    manifest, clip = load_clip(dataset, split, size=model.config.output_resolution,
                               normalize_audio=model.config.audio.normalize, brows=model.config.conditions.brows)
    samples = _split_audio(dataset, clip.indices.tolist(), manifest.fps)
    conditions = Conditions(audio=audio_context(clip.audio_features, clip.indices), eye=clip.eye,
                            angles=clip.angles, landmarks=clip.landmarks)
    with _writer(videos, "dataset", manifest.fps, samples) as writer:
        rendered = _rendered(model, conditions, clip.cam2world, kept, "dataset", writer, plate_warp=clip.plate_warps)
        targets = (frame.permute(1, 2, 0).numpy() for frame in clip.frames)
        result = score_pair(rendered, targets, len(clip), config, experts, embedder, progress, desc=f"{split} split")
    return (result, conditions, samples, manifest.fps, split_far_background(clip),
            SplitMesh.of(clip, model.config.output_resolution))


def split_far_background(clip: ClipData) -> Bool[ndarray, "frames s s"]:
    """`pixels.far_background` of every frame of a split, from its label maps."""
    return np.stack([far_background(labels[0].numpy() == BACKGROUND_LABEL) for labels in clip.parsing])


def evaluate_run(run_dir: Path, output_dir: Path, config: EvaluationConfig, device: torch.device,
                 dataset: Path | None = None, split: str = "test", audio: Path | None = None,
                 views: str = DEFAULT_VIEWS, progress: bool = False, save_videos: bool = True,
                 video_tags: dict[str, str] | None = None, overrides: RenderOverrides | None = None) -> dict:
    """Render and score a trained run; writes metrics.json, report.html and (unless `save_videos` is off)
    videos/NAME.mp4 into `output_dir`. `overrides`: settings that replace the run's (`inference.load_run`)."""
    view_cameras = parse_views(views)
    model, run_config, driving = load_run(run_dir, device, overrides)
    dataset = Path(dataset or run_config["dataset"])
    driving_audio = _load_driving_audio(audio_files(audio), read_manifest(dataset).fps) if audio else {}
    experts = load_experts(config, device)
    embedder = IdentityEmbedder()
    # The views' videos go to a staging directory that replaces videos/ only once every view has been scored: a
    # failed evaluation leaves no new videos, no metrics.json and no directory it created.
    staging = atomic_dir(Path(output_dir) / VIDEOS_DIR) if save_videos else contextlib.nullcontext()
    with created_dir(output_dir), staging as staged:
        videos = SavedVideos(staged, dict(video_tags or {})) if staged else None
        kept = _Kept()
        result, conditions, samples, fps, background, split_mesh = _score_split(model, dataset, split, config, experts,
                                                                                embedder, kept, videos, progress)
        found, skipped = pair_metrics(result, config)
        frontal_grey = np.stack(kept.grey["dataset"])
        found.update(background_flicker(frontal_grey, background))
        size = model.config.output_resolution
        metrics = prefixed(f"{split}/", {**found, "width": size, "height": size})
        skipped = prefixed(f"{split}/", skipped)
        for prefix, track, syncnet in (("", result.prediction, experts.syncnet), ("gt/", result.target, None)):
            found, reasons = sync_metrics(track, samples, fps, config, syncnet)
            metrics.update(prefixed(f"{split}/{prefix}", found))
            skipped.update(prefixed(f"{split}/{prefix}",
                                    {k: v for k, v in reasons.items() if syncnet or "lse" not in k}))
        for name, camera in view_cameras.items():
            track = result.prediction
            if camera != "dataset":
                cam2world = camera_path(camera, len(result.per_frame["psnr"]), driving)
                with _writer(videos, name, fps, samples) as writer:
                    track = observe_video(_rendered(model, conditions, cam2world, kept, name, writer),
                                          cam2world.shape[0], config, experts, embedder, progress, desc=f"view {name}")
            found, reasons = _unpaired_metrics(track, result.target, result.prediction, samples, fps, config, experts)
            if camera != "dataset":  # where a rigid head would show the split's tracked meshes
                shape, why = split_mesh.metrics(track, cam2world)
                found.update(shape)
                reasons.update(why)
            frames = np.stack(kept.grey[name])
            found.update({**background_change(frames, frontal_grey, background),
                          **background_flicker(frames, background)})
            if "background/view_change" not in found:
                reasons["background/view_change"] = "the ground truth has no background far from the person"
            metrics.update(prefixed(f"view/{name}/", found))
            skipped.update(prefixed(f"view/{name}/", reasons))
        mouth_rows = [("ground truth", result.target.mouth_crops), ("render", result.prediction.mouth_crops)]
        for name, driving_samples in driving_audio.items():
            found, reasons, track = _cross_metrics(model, run_config, driving, name, driving_samples, fps,
                                                   result.target, result.prediction, config, experts, embedder, kept,
                                                   videos, progress)
            metrics.update(prefixed(f"cross/{name}/", found))
            skipped.update(prefixed(f"cross/{name}/", reasons))
            mouth_rows.append((f"cross {name}", track.mouth_crops))
        skipped.update(experts.skipped)
        report = ReportData(title=f"deltaplane evaluation: {Path(run_dir).name}",
                            inputs={"run": str(run_dir), "dataset": str(dataset), "split": split,
                                    "audio–video offset": describe_offset(read_manifest(dataset)),
                                    "cross audio": str(audio) if audio else "–",
                                    "rendering": describe_rendering(model.config), "device": str(device)},
                            metrics=metrics, skipped=skipped,
                            series={f"{split}/{name}": result.per_frame[name] for name in ("psnr", "psnr_face", "lmd")},
                            strip=result.strip, view_rows=_view_rows(kept, view_cameras),
                            mouth_rows=mouth_rows, detail_rows=result.detail_rows,
                            videos={} if videos is None else {name: f"{VIDEOS_DIR}/{name}.mp4" for name in kept.middle},
                            notes=[*notes(config), "Unprefixed skipped keys apply to every prefix.",
                                   *([hint] if (hint := None if model.lips is None else  # lip-vector runs only
                                                 mouth_scale_hint(metrics, model.lips.config.mouth_scale)) else [])])
        return write_outputs(output_dir, metrics, skipped, report)


MOUTH_BANDS = {"cross": (0.7, 1.4), "test": (0.8, 1.25)}
"""Where the mouth's opening_std_ratio counts as moving as far as the person's (issue 9): with other voices
(cross/, against the split's frames), and with the split's own audio (test/, against its frames)."""


def mouth_scale_hint(metrics: dict, mouth_scale: float) -> str | None:
    """A report note when the renders' mouth moves outside `MOUTH_BANDS` (the cross-driven files' median ratio, or
    the split's without them): the `--mouth-scale` that would bring the ratio to 1 if it were proportional (it is
    not quite: the snap keeps the mouths among the training video's), from the run's `mouth_scale`, within 0.5–2.
    None inside the band, or when that factor is the run's."""
    ratios = [value for key, value in metrics.items()
              if key.startswith("cross/") and key.endswith("/mouth/opening_std_ratio")]
    band, where = MOUTH_BANDS["cross"], "with the other voices"
    if not ratios and "test/mouth/opening_std_ratio" in metrics:
        ratios = [metrics["test/mouth/opening_std_ratio"]]
        band, where = MOUTH_BANDS["test"], "with the split's own audio"
    if not ratios or not min(ratios) > 0:
        return None
    ratio = float(np.median(ratios))
    suggested = min(max(round(mouth_scale / ratio, 1), 0.5), 2.0)
    if band[0] <= ratio <= band[1] or suggested == mouth_scale:
        return None
    return (f"Mouth motion: {where} the mouth moves {ratio:.2f}× as far as the person's (opening_std_ratio, band "
            f"{band[0]}–{band[1]}); rendering with --mouth-scale {suggested:g} moves it "
            f"{'further' if suggested > mouth_scale else 'less far'} (the run renders at {mouth_scale:g}).")


VIEW_TILE = 192
"""Side of a tile of the report's view sheet."""


def _view_rows(kept: _Kept, views: dict[str, str]) -> list[tuple[str, tuple[tuple[int | str, ndarray], ...]]]:
    """The view sheet: the middle frame of every camera view (tiles named by view) above its depth, then the
    spiral's evenly spaced frames (tiles named by frame index)."""
    def tile(image: ndarray) -> ndarray:
        return cv2.resize(image, (VIEW_TILE, VIEW_TILE), interpolation=cv2.INTER_AREA)

    names = [name for name in views if name in kept.middle]
    rows = [("views", tuple((name, tile(kept.middle[name])) for name in names)),
            ("depth", tuple((name, tile(kept.depth[name])) for name in names))]
    if kept.spaced.get("spiral"):
        rows.append(("spiral", tuple((index, tile(frame)) for index, frame in kept.spaced["spiral"])))
    return rows
