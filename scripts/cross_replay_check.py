"""Does a cross-driven render's mouth follow the new audio, or the training frames whose cameras it replays?

`deltaplane render --camera dataset` (and the cross renders of scripts/gpu_lip_motion.py) replays the training
video's cameras forward and backward (`inference.DrivingTracks.replay`). For each cross_NAME.mp4 this prints the
landmark sync of the rendered mouth opening with the new audio, with the *training* audio at the replayed frames,
and the correlation with the tracked opening of the replayed training frames.

    python scripts/cross_replay_check.py DATASET RENDER_DIR [RENDER_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from deltaplane.audio.io import load_audio
from deltaplane.data.schema import AUDIO_WAV, TRACKS, read_manifest
from deltaplane.evaluation.face import IdentityEmbedder, mouth_opening
from deltaplane.evaluation.scoring import EvaluationConfig, load_experts, observe_video
from deltaplane.evaluation.sync import landmark_sync, speech_envelope
from deltaplane.media.video import iter_frames, probe_video


def replay_indices(num_frames: int, length: int) -> np.ndarray:
    """`DrivingTracks.replay` for a training split of `length` frames starting at frame 0."""
    period = max(2 * length - 2, 1)
    phase = np.arange(num_frames) % period
    return np.where(phase < length, phase, period - phase)


def main() -> None:
    dataset, directories = Path(sys.argv[1]), [Path(d) for d in sys.argv[2:]]
    manifest = read_manifest(dataset)
    fps, train_length = manifest.fps, len(manifest.splits["train"])
    training_envelope = speech_envelope(load_audio(dataset / AUDIO_WAV), manifest.num_frames, fps)
    with np.load(dataset / TRACKS) as tracks:
        tracked = np.array([mouth_opening(points) for points in tracks["landmarks_aligned"]])
    config = EvaluationConfig(identity_every=1 << 30)
    experts, embedder = load_experts(config, torch.device("cpu")), IdentityEmbedder()
    table = {}
    for directory in directories:
        for path in sorted(directory.glob("cross_*.mp4")):
            count = probe_video(path).num_frames_estimate
            opening = observe_video(iter_frames(path, fps), count, config, experts, embedder).per_frame(mouth_opening)
            replayed = replay_indices(len(opening), train_length)
            found = np.isfinite(opening)
            new = landmark_sync(opening, speech_envelope(load_audio(path), len(opening), fps), 10)
            old = landmark_sync(opening, training_envelope[replayed], 10)
            table[f"{directory.name}/{path.stem}"] = {
                "sync_new_audio": new.correlation, "sync_replayed_training_audio": old.correlation,
                "corr_replayed_tracked_opening": float(np.corrcoef(opening[found], tracked[replayed][found])[0, 1])}
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
