"""`deltaplane evaluate RUN_DIR`: render a dataset split with its own audio and cameras and score it against its
frames (`test/…`), render the same audio from other cameras (`view/NAME/…`: identity vs the split's frames, sync),
and optionally render other audio (`cross/…`: sync, identity vs the split's mean face descriptor)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from numpy import ndarray

from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.audio.io import load_audio
from deltaplane.data.dataset import audio_context, load_clip
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.errors import InputError
from deltaplane.evaluation.face import IdentityEmbedder
from deltaplane.evaluation.report import ReportData
from deltaplane.evaluation.scoring import (EvaluationConfig, Experts, FaceTrack, PairResult, identity_distances,
                                           identity_metrics, load_experts, observe_video, pair_metrics, prefixed,
                                           score_pair, sync_metrics)
from deltaplane.evaluation.videos import notes, write_outputs
from deltaplane.inference import (audio_windows, camera_path, driving_conditions, load_run, render_clip,
                                  to_uint8)
from deltaplane.media.video import output_frame_count
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.structs import Conditions

DEFAULT_VIEWS = "dataset,front,yaw=±30,pitch=±20,spiral"
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
        elif item:
            raise InputError(f"unknown view {item!r} in --views; use dataset, front, orbit, spiral, yaw=±DEG or "
                             "pitch=±DEG, separated by commas")
    return views


def _rendered(model: TriplaneTalker, conditions: Conditions, cam2world: torch.Tensor,
              keep: dict[str, ndarray], name: str) -> Iterator[ndarray]:
    """Rendered uint8 frames; the middle one is kept in `keep[name]` for the report."""
    middle = cam2world.shape[0] // 2
    for index, (rgb, _) in enumerate(render_clip(model, conditions, cam2world)):
        frame = to_uint8(rgb)
        if index == middle:
            keep[name] = frame
        yield frame


def _split_audio(dataset: Path, indices: Iterable[int], fps: float) -> ndarray:
    """The dataset audio under the split's frames (frame k covers [k, k + 1) / fps)."""
    samples = load_audio(dataset / AUDIO_WAV)
    hop = SAMPLE_RATE / fps
    return np.concatenate([samples[round(index * hop):round((index + 1) * hop)] for index in indices])


def _view_metrics(track: FaceTrack, target: FaceTrack, samples: ndarray, fps: float, config: EvaluationConfig,
                  experts: Experts) -> tuple[dict, dict]:
    metrics, skipped = identity_metrics(identity_distances(track, target.embeddings), config.identity_every)
    found, reasons = sync_metrics(track, samples, fps, config, experts.syncnet)
    metrics.update(found, **{"faces/missing": int((~track.found).sum())})
    skipped.update(reasons)
    return metrics, skipped


def _cross_metrics(model: TriplaneTalker, run_config: dict, driving, audio: Path, fps: float, target: FaceTrack,
                   config: EvaluationConfig, experts: Experts, embedder: IdentityEmbedder, keep: dict[str, ndarray],
                   progress: bool) -> tuple[dict, dict]:
    """The run driven by other audio with the training video's tokens and cameras: sync, and identity against the
    mean descriptor of the split's frames."""
    samples = load_audio(audio)
    num_frames = output_frame_count(samples.shape[0] / SAMPLE_RATE, fps)
    if num_frames < 1:
        raise InputError(f"{audio} is too short to render a frame")
    conditions, _ = driving_conditions(audio_windows(run_config, samples, num_frames, fps), driving, neutral=False)
    frames = _rendered(model, conditions, camera_path("dataset", num_frames, driving), keep, "cross")
    track = observe_video(frames, num_frames, config, experts, embedder, progress, desc="cross audio")
    known = target.embeddings[np.isfinite(target.embeddings).all(1)]
    if not known.shape[0]:
        metrics, skipped = {}, {"id_distance": "no face in the ground-truth frames"}
    else:
        reference = np.broadcast_to(known.mean(0), track.embeddings.shape)
        metrics, skipped = identity_metrics(identity_distances(track, reference), config.identity_every)
    found, reasons = sync_metrics(track, samples, fps, config, experts.syncnet)
    metrics.update(found, **{"faces/missing": int((~track.found).sum())})
    skipped.update(reasons)
    return metrics, skipped


def _score_split(model: TriplaneTalker, dataset: Path, split: str, config: EvaluationConfig, experts: Experts,
                 embedder: IdentityEmbedder, keep: dict[str, ndarray], progress: bool
                 ) -> tuple[PairResult, Conditions, ndarray, float]:
    """Render the split with its own audio windows, tokens and cameras and score it against its frames."""
    manifest, clip = load_clip(dataset, split, size=model.config.output_resolution)
    conditions = Conditions(audio=audio_context(clip.audio_features, clip.indices), eye=clip.eye,
                            angles=clip.angles, landmarks=clip.landmarks)
    rendered = _rendered(model, conditions, clip.cam2world, keep, "dataset")
    targets = (frame.permute(1, 2, 0).numpy() for frame in clip.frames)
    result = score_pair(rendered, targets, len(clip), config, experts, embedder, progress, desc=f"{split} split")
    return result, conditions, _split_audio(dataset, clip.indices.tolist(), manifest.fps), manifest.fps


def evaluate_run(run_dir: Path, output_dir: Path, config: EvaluationConfig, device: torch.device,
                 dataset: Path | None = None, split: str = "test", audio: Path | None = None,
                 views: str = DEFAULT_VIEWS, progress: bool = False) -> dict:
    """Render and score a trained run; writes metrics.json and report.html into `output_dir`."""
    view_cameras = parse_views(views)
    model, run_config, driving = load_run(run_dir, device)
    dataset = Path(dataset or run_config["dataset"])
    experts = load_experts(config, device)
    embedder = IdentityEmbedder()
    keep: dict[str, ndarray] = {}  # one rendered frame per view for the report
    result, conditions, samples, fps = _score_split(model, dataset, split, config, experts, embedder, keep,
                                                    progress)
    found, skipped = pair_metrics(result, config)
    size = model.config.output_resolution
    metrics = prefixed(f"{split}/", {**found, "width": size, "height": size})
    skipped = prefixed(f"{split}/", skipped)
    for prefix, track, syncnet in (("", result.prediction, experts.syncnet), ("gt/", result.target, None)):
        found, reasons = sync_metrics(track, samples, fps, config, syncnet)
        metrics.update(prefixed(f"{split}/{prefix}", found))
        skipped.update(prefixed(f"{split}/{prefix}", {k: v for k, v in reasons.items() if syncnet or "lse" not in k}))
    for name, camera in view_cameras.items():
        track = result.prediction
        if camera != "dataset":
            cam2world = camera_path(camera, len(result.per_frame["psnr"]), driving)
            track = observe_video(_rendered(model, conditions, cam2world, keep, name), cam2world.shape[0], config,
                                  experts, embedder, progress, desc=f"view {name}")
        found, reasons = _view_metrics(track, result.target, samples, fps, config, experts)
        metrics.update(prefixed(f"view/{name}/", found))
        skipped.update(prefixed(f"view/{name}/", reasons))
    if audio is not None:
        found, reasons = _cross_metrics(model, run_config, driving, Path(audio), fps, result.target, config,
                                        experts, embedder, keep, progress)
        metrics.update(prefixed("cross/", found))
        skipped.update(prefixed("cross/", reasons))
    skipped.update(experts.skipped)
    report = ReportData(title=f"deltaplane evaluation: {Path(run_dir).name}",
                        inputs={"run": str(run_dir), "dataset": str(dataset), "split": split,
                                "cross audio": str(audio) if audio else "–", "device": str(device)},
                        metrics=metrics, skipped=skipped,
                        series={f"{split}/{name}": result.per_frame[name] for name in ("psnr", "psnr_face", "lmd")},
                        strip=result.strip, views=keep,
                        notes=[*notes(config), "Unprefixed skipped keys apply to every prefix."])
    return write_outputs(output_dir, metrics, skipped, report)
