"""The audio half of the lip-vector mode on its own, on the CPU: train the audio encoder + lip head of
`fields.lips` to regress a dataset's tracked lip vectors, with or without per-utterance normalisation and speaker
augmentation, and score the mouth opening it predicts (no renderer involved):

* test split: correlation of the main lip component with the tracked one, and the opening's std ratio;
* every file of AUDIO_DIR: the opening's std ratio against the test split's tracked opening, and the landmark sync
  score (opening vs speech envelope) that `deltaplane evaluate` uses.

    python scripts/lip_regression_ablation.py DATASET AUDIO_DIR --variants plain,norm,aug8,norm+aug8 --steps 3000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from deltaplane.audio.augment import SpeakerAugmentConfig, augmented_windows
from deltaplane.audio.encoder import AudioEncoder, AudioEncoderConfig
from deltaplane.audio.features import LogMelExtractor, frame_windows, normalize_utterance
from deltaplane.audio.io import audio_files, load_audio
from deltaplane.data.dataset import audio_context, load_clip
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.evaluation.sync import landmark_sync, speech_envelope
from deltaplane.fields.lips import LipConfig, LipVector
from deltaplane.geometry.lips import MOUTH_POINTS

INNER_PAIRS = ((61, 67), (62, 66), (63, 65))


def opening(shapes: torch.Tensor) -> np.ndarray:
    """Inner-lip gap of mouth shapes (already over the eye-corner distance), as `evaluation.face.mouth_opening`."""
    points = shapes.reshape(-1, 20, 2)
    first = MOUTH_POINTS.start
    gaps = [(points[:, upper - first] - points[:, lower - first]).norm(dim=-1) for upper, lower in INNER_PAIRS]
    return torch.stack(gaps).mean(0).numpy()


def run(dataset: Path, audio_dir: Path, variant: str, steps: int, seed: int, batch: int = 32, lr: float = 2e-3
        ) -> dict:
    normalize, copies = "norm" in variant, int(variant.split("aug")[1]) if "aug" in variant else 0
    manifest, train_clip = load_clip(dataset, "train", size=64, normalize_audio=normalize)
    _, test_clip = load_clip(dataset, "test", size=64, normalize_audio=normalize)
    versions = [train_clip.audio_features]
    if copies:
        extra = augmented_windows(load_audio(dataset / AUDIO_WAV), manifest.num_frames, manifest.fps,
                                  SpeakerAugmentConfig(copies=copies, seed=seed))
        versions += [torch.from_numpy(normalize_utterance(c) if normalize else c) for c in extra]
    torch.manual_seed(seed)
    encoder = AudioEncoder(AudioEncoderConfig(feature_dim=80))
    lips = LipVector(LipConfig(), code_dim=64, token_dim=64)
    lips.fit(train_clip.mouth_shapes)
    targets = lips.coefficients(train_clip.mouth_shapes)
    optimizer = torch.optim.Adam([*encoder.parameters(), *lips.head.parameters()], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        positions = torch.randint(len(train_clip), (batch,), generator=generator)
        version = versions[int(torch.randint(len(versions), (1,), generator=generator))]
        predicted = lips.predict(encoder(audio_context(version, train_clip.indices[positions])), calibrated=False)
        loss = (predicted - targets[positions]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predict = lambda features, indices: lips.predict(encoder(audio_context(features, indices)), False)
        lips.calibrate(predict(train_clip.audio_features, train_clip.indices), targets)
        test_predicted = lips.predict(encoder(audio_context(test_clip.audio_features, test_clip.indices)))
        tracked_test = lips.coefficients(test_clip.mouth_shapes)
        reference = opening(test_clip.mouth_shapes)
        row = {"test/lip_correlation": float(np.corrcoef(test_predicted[:, 0], tracked_test[:, 0])[0, 1]),
               "test/opening_std_ratio": float(opening(lips.shapes(test_predicted)).std() / reference.std())}
        for name, path in audio_files(audio_dir).items():
            samples = load_audio(path)
            count = int(len(samples) / 16000 * manifest.fps)
            windows = frame_windows(LogMelExtractor()(samples), count, manifest.fps)
            features = torch.from_numpy(normalize_utterance(windows) if normalize else windows)
            predicted = opening(lips.shapes(lips.predict(encoder(audio_context(features, torch.arange(count))))))
            score = landmark_sync(predicted, speech_envelope(samples, count, manifest.fps), 10)
            row[f"cross/{name}/opening_std_ratio"] = float(predicted.std() / reference.std())
            row[f"cross/{name}/sync_correlation"] = None if score is None else score.correlation
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("--variants", default="plain,norm,aug8,norm+aug8")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32, help="frames per step (training uses 4)")
    parser.add_argument("--lr", type=float, default=2e-3)
    args = parser.parse_args()
    table = {}
    for variant in args.variants.split(","):
        rows = [run(args.dataset, args.audio_dir, variant, args.steps, seed, args.batch, args.lr)
                for seed in range(args.seeds)]
        table[variant] = {key: float(np.mean([r[key] for r in rows if r[key] is not None]))
                          for key in rows[0]}
    print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
