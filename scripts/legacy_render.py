"""Render a run of the code of `ded61ed` (the model issue 9 was measured against, trained on a
`scripts/legacy_dataset.py` copy) as that code's `deltaplane evaluate RUN` renders it, without scoring: the GPU
machine has no landmark detector, so the videos are scored on the CPU machine with today's `deltaplane evaluate
--pred ... --gt ...` and `scripts/score_lip_renders.py` (docs/lip-motion.md "The original model"). Run it with the
old code's `src` first on PYTHONPATH; it uses only that code's modules.

    PYTHONPATH=OLD/src python scripts/legacy_render.py RUN AUDIO_DIR OUT

Writes OUT/test.mp4 (the test split with its own audio windows, tokens and cameras), OUT/test_gt.mp4 (its frames)
and OUT/cross_NAME.mp4 for every speech file of AUDIO_DIR (driven with the training video's tokens and cameras
replayed, as `evaluate --audio` drives it), each with its audio, unwatermarked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from deltaplane.audio.features import SAMPLE_RATE
from deltaplane.audio.io import audio_files, load_audio
from deltaplane.data.dataset import audio_context, load_clip
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.inference import audio_windows, camera_path, driving_conditions, load_run, render_clip, to_uint8
from deltaplane.media.video import VideoWriter, output_frame_count
from deltaplane.structs import Conditions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, run_config, driving = load_run(args.run, device)
    dataset = Path(run_config["dataset"])
    manifest, clip = load_clip(dataset, "test", size=model.config.output_resolution)
    fps, hop = manifest.fps, SAMPLE_RATE / manifest.fps
    speech = load_audio(dataset / AUDIO_WAV)
    samples = np.concatenate([speech[round(i * hop):round((i + 1) * hop)] for i in clip.indices.tolist()])
    conditions = Conditions(audio=audio_context(clip.audio_features, clip.indices), eye=clip.eye,
                            angles=clip.angles, landmarks=clip.landmarks)
    videos = {"test": ((to_uint8(rgb) for rgb, _ in render_clip(model, conditions, clip.cam2world)), samples),
              "test_gt": ((frame.permute(1, 2, 0).numpy() for frame in clip.frames), samples)}
    for name, path in audio_files(args.audio_dir).items():
        driving_samples = load_audio(path)
        count = output_frame_count(driving_samples.shape[0] / SAMPLE_RATE, fps)
        driven, _ = driving_conditions(audio_windows(run_config, driving_samples, count, fps), driving,
                                       neutral=False)
        frames = (to_uint8(rgb) for rgb, _ in render_clip(model, driven, camera_path("dataset", count, driving)))
        videos[f"cross_{name}"] = (frames, driving_samples)  # rendered lazily, as it is written
    for name, (frames, audio) in videos.items():
        with VideoWriter(args.out / f"{name}.mp4", fps, audio=audio) as writer:
            for frame in frames:
                writer.write(frame)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
