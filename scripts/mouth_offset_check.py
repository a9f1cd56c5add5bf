"""Two checks on a rendered test split's mouth against its ground truth (gpu_lip_motion.py's test.mp4 and
test_gt.mp4), for reading `lmd_offset` / `lmd_motion` (docs/evaluation.md):

* timing: the render's mouth opening correlated with the truth's, and its LMD, with the render shifted by LAG frames
  (positive: the render's frame t + LAG against the truth's frame t, i.e. a render that comes late scores best at a
  positive lag);
* pauses and speech: the render's `lmd_offset` / `lmd_motion` over the frames where the truth's audio pauses and
  where it speaks (`lip_regression_ablation.speech_activity`);
* softness: the truth blurred by a Gaussian of σ px scored against itself: how far dlib's mouth points move on a
  soft mouth alone (`lmd_offset`, the inner-lip gap), next to the blur's sharpness ratio (`laplacian_variance` in
  the truth's face hull) and the render's;
* with --dataset: the tracked mean inner-lip opening (`geometry.lips.shape_opening`) of the dataset's training and
  test splits, i.e. how closed the test passage is against the person's average.

    python scripts/mouth_offset_check.py RUN_DIR [--render test] [--truth test_gt] [--dataset DATASET]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from lip_regression_ablation import speech_activity

from deltaplane.audio.io import load_audio
from deltaplane.data.dataset import load_clip
from deltaplane.evaluation import face
from deltaplane.evaluation.pixels import laplacian_variance
from deltaplane.evaluation.scoring import EvaluationConfig, load_experts, observe_video
from deltaplane.geometry.lips import shape_opening
from deltaplane.media.video import iter_frames, probe_video

LAGS = range(-3, 4)
SIGMAS = (0.5, 1.0, 2.0, 3.0)
INNER_GAP = (62, 66)
"""The inner lips' middle points (iBUG 68): their distance is the mouth's opening in pixels."""


def shifted(truth: np.ndarray, render: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The truth's frames t and the render's frames t + lag, where both exist."""
    start, stop = max(0, -lag), min(len(truth), len(render) - lag)
    return truth[start:stop], render[start + lag:stop + lag]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--render", default="test")
    parser.add_argument("--truth", default="test_gt")
    parser.add_argument("--dataset", type=Path, default=None, help="the run's preprocessed dataset")
    args = parser.parse_args()
    if args.dataset is not None:
        means = {split: float(shape_opening(load_clip(args.dataset, split, size=32)[1].mouth_shapes.float()).mean())
                 for split in ("train", "test")}
        print(f"tracked mean opening: train {means['train']:.4f}, test {means['test']:.4f} "
              f"(train / test {means['train'] / means['test']:.2f})")
    config = EvaluationConfig(identity_every=1_000_000)  # landmarks only
    experts, embedder = load_experts(config, torch.device("cpu")), face.IdentityEmbedder()

    def landmarks(frames: list[np.ndarray]) -> np.ndarray:
        return observe_video(iter(frames), len(frames), config, experts, embedder).landmarks

    truth_video = args.run / f"{args.truth}.mp4"
    truth_frames = list(iter_frames(truth_video))
    render_frames = list(iter_frames(args.run / f"{args.render}.mp4"))
    width = truth_frames[0].shape[1]
    truth, render = landmarks(truth_frames), landmarks(render_frames)
    for lag in LAGS:
        ours, theirs = shifted(truth, render, lag)
        found = np.isfinite(ours).all((1, 2)) & np.isfinite(theirs).all((1, 2))
        openings = [np.array([face.mouth_opening(points) for points in side[found]]) for side in (ours, theirs)]
        lmd = np.mean([face.mouth_landmark_distance(p, t, width) for p, t in zip(theirs[found], ours[found])])
        print(f"lag {lag:+d}: opening correlation {np.corrcoef(*openings)[0, 1]:.2f}, LMD {lmd:.3f}")

    count = min(len(truth), len(render))
    speaking = speech_activity(load_audio(truth_video), count, probe_video(truth_video).fps) > 0
    for name, chosen in (("pauses", ~speaking), ("speech", speaking)):
        offset, motion = face.mouth_shape_offset(render[:count][chosen], truth[:count][chosen], width)
        print(f"{name} ({int(chosen.sum())} frames): offset {offset:.3f}, motion {motion:.3f}")

    def gap(points: np.ndarray) -> float:
        return float(np.nanmean(np.linalg.norm(points[:, INNER_GAP[0]] - points[:, INNER_GAP[1]], axis=1)))

    def sharpness(frames: list[np.ndarray]) -> float:
        return float(np.nanmean([laplacian_variance(frame, face.face_mask(points, *frame.shape[:2]))
                                 for frame, points in zip(frames, truth) if np.isfinite(points).all()]))

    reference = sharpness(truth_frames)
    offset, motion = face.mouth_shape_offset(render, truth, width)
    print(f"render: offset {offset:.3f}, motion {motion:.3f}, inner gap {gap(render):.2f} px (truth {gap(truth):.2f}),"
          f" sharpness ratio {sharpness(render_frames) / reference:.2f}")
    for sigma in SIGMAS:
        blurred = [cv2.GaussianBlur(frame, (0, 0), sigma) for frame in truth_frames]
        points = landmarks(blurred)
        offset, motion = face.mouth_shape_offset(points, truth, width)
        print(f"truth blurred, σ {sigma} px: offset {offset:.3f}, motion {motion:.3f}, inner gap {gap(points):.2f} px,"
              f" sharpness ratio {sharpness(blurred) / reference:.2f}")


if __name__ == "__main__":
    main()
