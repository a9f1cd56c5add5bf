"""Score the videos of scripts/gpu_lip_motion.py on the CPU machine, as `deltaplane evaluate` would: the test split
against its ground truth (mouth motion, LMD, sync, PSNR, sharpness, detail gain; also its renders with still tokens
or tracked lips), and every cross-driven video (cross_NAME.mp4: replayed training cameras, still_NAME.mp4: one
fixed camera) against the split's frames (mouth motion, sync), and every novel view (view_NAME.mp4: identity, faces
found, sharpness against test.mp4, and with --dataset the background's change from test.mp4 and flicker).

With --dataset, each cross-driven video also gets the replay check: does its mouth follow the new audio, or the
training frames whose cameras it replays (`inference.DrivingTracks.replay`, forward and backward)? It adds the
landmark sync with the *training* audio at the replayed frames (`sync_replayed/correlation`) and the correlation with
the tracked opening of the replayed training frames (`replayed_opening_correlation`), and each test render gets its
mouth opening over the ground truth's in the test split's pauses and in its speech (`mouth/pause_opening_ratio`,
`mouth/speech_opening_ratio`; a pause as in scripts/lip_regression_ablation.py's `speech_activity`).

    python scripts/score_lip_renders.py [--dataset DATASET] VARIANT_DIR [VARIANT_DIR ...] > table.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
import torch

from deltaplane.audio.io import load_audio
from deltaplane.data.schema import AUDIO_WAV, TRACKS, read_manifest
from deltaplane.data.dataset import load_clip
from deltaplane.evaluation.face import IdentityEmbedder, mouth_opening
from deltaplane.evaluation.pixels import background_change, background_flicker, small_grey
from deltaplane.evaluation.run import DEFAULT_VIEWS, SplitMesh, parse_views, split_far_background
from deltaplane.evaluation.scoring import (EvaluationConfig, face_counts, identity_metrics, load_experts,
                                           motion_metrics, observe_video, pair_metrics, score_pair, sharpness_metrics,
                                           sync_metrics)
from deltaplane.evaluation.sync import landmark_sync, speech_envelope
from deltaplane.inference import camera_path
from deltaplane.media.video import iter_frames, probe_video
from lip_regression_ablation import opening_ratio, speech_activity

FPS = 25.0
RENDERS = ("test", "test_still_tokens", "test_teacher", "test_teacher_snapped", "test_unsnapped", "test_calibrated",
           "test_random", "test_samples2x", "test_xblur_xy", "test_xblur_xz")
"""Renders of the test split by scripts/gpu_lip_motion.py: own tokens, eye/landmark tokens held still, tracked
lips, with the lip snap on the tracked lips snapped and the audio's lips with the snap switched off, and with
`LipConfig.per_utterance` the audio's lips with the calibrated gain instead of the passage's own, and with
`--sampling` the same weights with random ray samples and with twice the samples, and with `--x-blur` the xy or xz
plane blurred along x in the mouth box (also scored: every test_snapW.mp4, the audio's lips snapped at another
bandwidth)."""
VIEW_IDENTITY_EVERY = 5
"""Frames between identity descriptors of the novel views (dlib, ~95 ms a face on the 2-core CPU)."""
CROSS = ("cross", "still", "plain")
"""Prefixes of the cross-driven renders: replayed training cameras, one fixed camera, one fixed camera with the lip
snap switched off."""


def cross_prefixes(prefixes: Iterable[str]) -> list[str]:
    """The cross-driven prefixes among `prefixes`: `CROSS`'s, then crossxF (`gpu_lip_motion.py --mouth-scales`)."""
    found = set(prefixes)
    return [prefix for prefix in CROSS if prefix in found] + sorted(
        prefix for prefix in found if re.fullmatch(r"crossx[0-9.]+", prefix))


KEEP = ("psnr", "psnr_face", "psnr_eyes", "bias_eyes", "psnr_mouth", "bias_mouth", "psnr_torso", "bias_torso", "lmd",
        "lmd_offset", "lmd_motion", "mouth/opening_std_ratio", "mouth/opening_mean_ratio", "mouth/open_fraction",
        "mouth/open_fraction_reference",
        "sync/correlation", "sync/offset_frames", "sharpness_ratio", "detail_gain_1", "detail_gain_2",
        "mouth/pause_opening_ratio", "mouth/speech_opening_ratio", "eyes/openness_std_ratio",
        "eyes/openness_correlation")


class Replay:
    """The training split's speech envelope and tracked mouth opening, indexed as the renders replay them."""

    def __init__(self, dataset: Path) -> None:
        manifest = read_manifest(dataset)
        self.length = len(manifest.splits["train"])
        self.envelope = speech_envelope(load_audio(dataset / AUDIO_WAV), manifest.num_frames, manifest.fps)
        with np.load(dataset / TRACKS) as tracks:
            self.opening = np.array([mouth_opening(points) for points in tracks["landmarks_aligned"]])

    def indices(self, num_frames: int) -> np.ndarray:
        """`DrivingTracks.replay` for a training split starting at frame 0."""
        period = max(2 * self.length - 2, 1)
        phase = np.arange(num_frames) % period
        return np.where(phase < self.length, phase, period - phase)

    def metrics(self, opening: np.ndarray) -> dict[str, float]:
        replayed, found = self.indices(len(opening)), np.isfinite(opening)
        sync = landmark_sync(opening, self.envelope[replayed], 10)  # None: too few faces or a silent stretch
        return {"sync_replayed/correlation": None if sync is None else sync.correlation,
                "replayed_opening_correlation":
                    float(np.corrcoef(opening[found], self.opening[replayed][found])[0, 1])}


def frames(path: Path):
    return iter_frames(path, FPS), probe_video(path).num_frames_estimate


SPECKLE_LEVELS = 40
"""Grey levels under its 5 × 5 median at which a pixel counts as a dark speck (docs/novel-views.md "Speckle on the
torso")."""
TORSO_ROWS = 0.6
"""Where the torso band starts, as a share of the frame's height from the top."""


def dark_specks(frame: np.ndarray) -> np.ndarray:
    """Pixels of an RGB frame at least `SPECKLE_LEVELS` darker than their 5 × 5 median (bool, height × width)."""
    grey = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    return (cv2.medianBlur(grey, 5).astype(np.int16) - grey) >= SPECKLE_LEVELS


def torso_speckle(path: Path) -> float:
    """Mean share of the pixels in a video's torso band (rows from `TORSO_ROWS` down) that are `dark_specks`. Real
    detail scores too (the ground truth's tie and collar: its own share is about 1e-3 on obama_20s), so compare
    renders of the same weights: the preset's frontal test frames score 2–4e-4 there, the `front` camera's render
    of the same frames 1e-5."""
    shares = []
    for frame in frames(path)[0]:
        specks = dark_specks(frame)
        shares.append(float(specks[int(TORSO_ROWS * len(specks)):].mean()))
    return float(np.mean(shares))


def test_pauses(dataset: Path) -> np.ndarray:
    """The test split's frames where the speaker pauses (`speech_activity` 0)."""
    manifest = read_manifest(dataset)
    activity = speech_activity(load_audio(dataset / AUDIO_WAV), manifest.num_frames, manifest.fps)
    return activity[manifest.splits["test"]] == 0


def phase_openings(result, pauses: np.ndarray) -> dict[str, float | None]:
    """A test render's mouth opening over the ground truth's, in the pauses and in the speech (frames where both
    show a face)."""
    predicted = np.asarray(result.prediction.per_frame(mouth_opening), dtype=float)
    truth = np.asarray(result.target.per_frame(mouth_opening), dtype=float)
    found = np.isfinite(predicted) & np.isfinite(truth)
    return {f"mouth/{phase}_opening_ratio": opening_ratio(predicted, truth, chosen & found)
            for phase, chosen in (("pause", pauses), ("speech", ~pauses))}


def score(directory: Path, replay: Replay | None, background: np.ndarray | None,
          pauses: np.ndarray | None = None, mesh: SplitMesh | None = None) -> dict:
    config = EvaluationConfig(identity_every=1000)
    experts = load_experts(config, torch.device("cpu"))
    embedder = IdentityEmbedder()
    samples = load_audio(directory / "test_gt.mp4")
    row = {}
    # gpu_lip_motion.py --snap-widths and --mouth-scales
    settings = sorted(path.stem for pattern in ("test_snap*.mp4", "test_mouthx*.mp4")
                      for path in directory.glob(pattern))
    for name in (*RENDERS, *settings):  # the test split rendered each way, against its ground truth
        if not (directory / f"{name}.mp4").is_file():
            continue
        (test, count), (truth, _) = frames(directory / f"{name}.mp4"), frames(directory / "test_gt.mp4")
        result = score_pair(test, truth, count, config, experts, embedder)
        table, _ = pair_metrics(result, config)
        table.update(sync_metrics(result.prediction, samples, FPS, config, None)[0])
        if pauses is not None:
            table.update(phase_openings(result, pauses))
        row.update({f"{name}/{key}": table[key] for key in KEEP if key in table})
        row[f"{name}/torso_speckle"] = torso_speckle(directory / f"{name}.mp4")
    row.update({f"test/gt/{key}": value for key, value in
                sync_metrics(result.target, samples, FPS, config, None)[0].items()})
    row["test/gt/torso_speckle"] = torso_speckle(directory / "test_gt.mp4")
    diagnostics = directory / "diagnostics.json"
    if diagnostics.is_file():  # --sampling's noise; the steps, the regression's fit, what the lip vectors ask for
        row.update({key: value for key, value in json.loads(diagnostics.read_text()).items()
                    if key.startswith(("sampling/", "lips/")) or key in ("steps", "test/lip_correlation")})
    for prefix in cross_prefixes(path.name.split("_")[0] for path in directory.glob("*.mp4")):
        for path in sorted(directory.glob(f"{prefix}_*.mp4")):
            video, count = frames(path)
            track = observe_video(video, count, config, experts, embedder)
            found = {key: value for key, value in {**motion_metrics(track, result.target)[0],
                     **sync_metrics(track, load_audio(path), FPS, config, None)[0]}.items() if key in KEEP}
            if replay is not None:
                found.update(replay.metrics(track.per_frame(mouth_opening)))
            row.update({f"{prefix}/{path.stem[len(prefix) + 1:]}/{key}": value for key, value in found.items()})
    row.update(score_views(directory, experts, embedder, background, mesh))
    return row


def grey_frames(path: Path) -> np.ndarray:
    return np.stack([small_grey(frame) for frame in frames(path)[0]])


def score_views(directory: Path, experts, embedder: IdentityEmbedder, background: np.ndarray | None,
                mesh: SplitMesh | None) -> dict:
    """view_NAME.mp4 (`gpu_lip_motion.py --views`) as `deltaplane evaluate RUN` scores views: identity against the
    split's frames, frames without a face, sharpness against the frontal render of the split (test.mp4), and with
    the split's far background and tracked meshes (`background`, `mesh`: --dataset) how much the background changes
    from the frontal render and between frames, and where the face is drawn (`mesh/offset`, `mesh/shape`)."""
    paths = sorted(directory.glob("view_*.mp4"))
    if not paths:
        return {}
    config = EvaluationConfig(identity_every=VIEW_IDENTITY_EVERY)
    truth, frontal = (observe_video(*frames(directory / f"{name}.mp4"), config, experts, embedder)
                      for name in ("test_gt", "test"))
    frontal_grey = grey_frames(directory / "test.mp4") if background is not None else None
    row, cameras = {}, parse_views(DEFAULT_VIEWS)
    for path in paths:
        track = observe_video(*frames(path), config, experts, embedder)
        found = {**identity_metrics(track, truth.embeddings, None, config.identity_every)[0],
                 **sharpness_metrics(track, frontal)[0], **face_counts(track),
                 "faces/frames": int(track.found.size)}
        if background is not None:
            grey = grey_frames(path)
            found.update({**background_change(grey, frontal_grey, background), **background_flicker(grey, background)})
        spec = cameras.get(path.stem[len("view_"):])
        if mesh is not None and spec is not None:  # not the --sampling variants' extra renders
            found.update(mesh.metrics(track, camera_path(spec, len(track.landmarks)))[0])
        row.update({f"view/{path.stem[len('view_'):]}/{key}": value for key, value in found.items()})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", type=Path, nargs="+")
    parser.add_argument("--dataset", type=Path,
                        help="the training dataset: adds the replay check, the pause and speech openings and the "
                             "views' background and mesh measures")
    args = parser.parse_args()
    replay = Replay(args.dataset) if args.dataset else None
    clip = load_clip(args.dataset, "test")[1] if args.dataset else None
    background = None if clip is None else split_far_background(clip)
    mesh = None if clip is None else SplitMesh.of(clip, clip.frames.shape[-1])
    pauses = test_pauses(args.dataset) if args.dataset else None
    names = [directory.name for directory in args.directories]  # the variant's name, or the path where two share it
    keys = names if len(set(names)) == len(names) else [str(directory) for directory in args.directories]
    print(json.dumps({key: score(directory, replay, background, pauses, mesh)
                      for key, directory in zip(keys, args.directories)}, indent=1))


if __name__ == "__main__":
    main()
