"""A copy of a dataset in the layout the code of `ded61ed` reads, so that the model issue 9 was measured against
(the `fast` preset with Talk3D's audio token, before any lip-motion work) can be trained on a clip today
(docs/lip-motion.md "The original model"): the frames as `frames/%06d.jpg` (JPEG quality 95) instead of
`frames.mp4`, and the manifest without the fields added since (`audio.offset_frames`: the audio files are already
shifted by it). Tracks, parsing maps and audio are copied as they are.

    python scripts/legacy_dataset.py DATASET OUT

Then, with the old code's `src` (`git archive ded61ed src | tar x -C DIR`) first on the path:
`python -m deltaplane.cli train OUT -o RUN --preset fast --minutes M` and `python -m deltaplane.cli evaluate RUN -o
EVAL --views dataset` (its `videos/dataset.mp4` is the test split's render; score it with today's `deltaplane
evaluate --pred ... --gt test_gt.mp4`).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2

from deltaplane.data.dataset import load_clip
from deltaplane.data.schema import AUDIO_FEATURES, AUDIO_WAV, MANIFEST, PARSING_DIR, TRACKS, frame_path

LEGACY_KEYS = {"": ("fps", "num_frames", "image_size", "source", "audio", "splits", "focal", "schema_version",
                    "stages", "phones", "config"),
               "source": ("path", "sha256", "fps", "width", "height", "duration", "audio_path"),
               "audio": ("kind", "dim", "window", "feature_rate", "sample_rate")}
"""The manifest fields of schema version 1 as `ded61ed` reads them (it refuses any other field)."""


def legacy_manifest(manifest: dict) -> dict:
    """`manifest` restricted to `LEGACY_KEYS`."""
    legacy = {key: manifest[key] for key in LEGACY_KEYS[""] if key in manifest}
    for part in ("source", "audio"):
        legacy[part] = {key: manifest[part][key] for key in LEGACY_KEYS[part] if key in manifest[part]}
    return legacy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frames").mkdir(exist_ok=True)
    _, clip = load_clip(args.dataset, "all")
    for index, frame in zip(clip.indices.tolist(), clip.frames.permute(0, 2, 3, 1).numpy()):
        cv2.imwrite(str(frame_path(args.out, index)), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    for name in (TRACKS, AUDIO_WAV, AUDIO_FEATURES):
        shutil.copy(args.dataset / name, args.out / name)
    shutil.copytree(args.dataset / PARSING_DIR, args.out / PARSING_DIR, dirs_exist_ok=True)
    manifest = json.loads((args.dataset / MANIFEST).read_text())
    (args.out / MANIFEST).write_text(json.dumps(legacy_manifest(manifest), indent=2))  # last: marks it complete
    print(f"wrote {args.out}: {len(clip)} frames")


if __name__ == "__main__":
    main()
