"""Score the videos of scripts/gpu_lip_motion.py on the CPU machine, as `deltaplane evaluate` would: the test split
against its ground truth (mouth motion, LMD, sync, PSNR; also its renders with still tokens or tracked lips), and every cross-driven video against the split's frames
(mouth motion, sync).

    python scripts/score_lip_renders.py VARIANT_DIR [VARIANT_DIR ...] > table.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from deltaplane.audio.io import load_audio
from deltaplane.evaluation.face import IdentityEmbedder
from deltaplane.evaluation.scoring import (EvaluationConfig, load_experts, motion_metrics, observe_video,
                                           pair_metrics, score_pair, sync_metrics)
from deltaplane.media.video import iter_frames, probe_video

FPS = 25.0
RENDERS = ("test", "test_still_tokens", "test_teacher")
"""Renders of the test split by scripts/gpu_lip_motion.py: own tokens, eye/landmark tokens held still, tracked
lips."""
KEEP = ("psnr", "psnr_face", "lmd", "mouth/opening_std_ratio", "mouth/opening_mean_ratio", "mouth/open_fraction",
        "mouth/open_fraction_reference", "sync/correlation", "sync/offset_frames")


def frames(path: Path):
    return iter_frames(path, FPS), probe_video(path).num_frames_estimate


def score(directory: Path) -> dict:
    config = EvaluationConfig(identity_every=1000)
    experts = load_experts(config, torch.device("cpu"))
    embedder = IdentityEmbedder()
    samples = load_audio(directory / "test_gt.mp4")
    row = {}
    for name in RENDERS:  # the test split rendered each way, against its ground truth
        if not (directory / f"{name}.mp4").is_file():
            continue
        (test, count), (truth, _) = frames(directory / f"{name}.mp4"), frames(directory / "test_gt.mp4")
        result = score_pair(test, truth, count, config, experts, embedder)
        table, _ = pair_metrics(result, config)
        table.update(sync_metrics(result.prediction, samples, FPS, config, None)[0])
        row.update({f"{name}/{key}": table[key] for key in KEEP if key in table})
    row.update({f"test/gt/{key}": value for key, value in
                sync_metrics(result.target, samples, FPS, config, None)[0].items()})
    for path in sorted(directory.glob("cross_*.mp4")):
        video, count = frames(path)
        track = observe_video(video, count, config, experts, embedder)
        found = {**motion_metrics(track, result.target)[0],
                 **sync_metrics(track, load_audio(path), FPS, config, None)[0]}
        row.update({f"cross/{path.stem[6:]}/{key}": value for key, value in found.items() if key in KEEP})
    return row


def main() -> None:
    print(json.dumps({Path(directory).name: score(Path(directory)) for directory in sys.argv[1:]}, indent=1))


if __name__ == "__main__":
    main()
