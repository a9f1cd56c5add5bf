"""The trainer's own lip prefit on the CPU (or `--device cuda`), scored as the trainer scores it: does
`training.lip_prefit.prefit_lips` give what scripts/lip_regression_ablation.py's `preN` promises
(docs/lip-motion.md "Run 48")?

Builds a variant of scripts/gpu_lip_motion.py as `training.trainer.train` builds it (its lip basis fitted on the
training frames, its speaker-augmented audio versions), runs the prefit, calibrates the gain, and optionally goes
on for `--then` steps of the same error at the preset's `lr_audio` (the regressions' share of a GPU call, without
the renderer). After each stage it prints, as JSON lines, the trainer's `training.evaluation.lip_fit` (the
calibrated mean regression against the tracked lip vectors) on the whole test split (what log.jsonl reports), on
the 16 evenly spaced test frames the trainer renders at each evaluation (what log.jsonl reported up to run 48), on
the training frames the regressions learn from and on the held-out calibration blocks, the correlation of the
vectors that drive the test split's render (`TriplaneTalker.clip_lip_vectors`: the
utterance's gain, range and snap), and their mean opening in the test split's pauses and speech and its spread, each
over the tracked mouths' (gpu_lip_motion's `pause_openings`, its diagnostics' `lips/*`).

    python scripts/lip_prefit_check.py DATA/CLIP_a05 [--variant base+prefit3000] [--then 1200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from gpu_lip_motion import pause_openings, unsnapped, variant_configs
from lip_regression_ablation import nearest_frame, speech_activity

from deltaplane.audio.io import load_audio
from deltaplane.data.dataset import ClipData, audio_context, load_clip
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.geometry.lips import shape_opening
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.training.evaluation import lip_fit
from deltaplane.training.lip_prefit import prefit_lips
from deltaplane.training.precision import autocast
from deltaplane.training.trainer import _audio_versions, calibrate_lips


@torch.no_grad()
def scores(model: TriplaneTalker, train_clip: ClipData, test_clip: ClipData, eval_frames: int,
           activity: np.ndarray) -> dict[str, float]:
    """The trainer's `lip_fit` on the test split's `eval_frames` evenly spaced frames (what log.jsonl reported up to
    run 48), on the whole test split, on the training frames the regressions learn from and on the held-out
    calibration blocks (where the clip holds any out); the correlation of the vectors that drive the test
    split's render, and their openings in the pauses (`activity` 0: the clip's per-frame speech activity) and the
    speech."""
    held_out = model.lips.held_out(train_clip.indices)
    device = held_out.device
    spaced = torch.from_numpy(np.linspace(0, len(test_clip) - 1, eval_frames).round().astype(np.int64)).to(device)
    parts = {f"test{eval_frames}": (test_clip, spaced),
             "test": (test_clip, torch.arange(len(test_clip), device=device)),
             "fitted": (train_clip, torch.nonzero(~held_out)[:, 0]),
             "held_out": (train_clip, torch.nonzero(held_out)[:, 0])}
    row = {f"{name}/{key}": value for name, (clip, positions) in parts.items() if len(positions)  # a short clip
           for key, value in lip_fit(model, clip, positions).items()}  # holds no calibration block out
    driving = model.clip_lip_vectors(audio_context(test_clip.audio_features, test_clip.indices))[:, 0]
    tracked = model.lips.coefficients(test_clip.mouth_shapes)[:, 0]
    row["test/driving_correlation"] = torch.corrcoef(torch.stack((driving, tracked)))[0, 1].item()
    return row | pause_openings(model, test_clip, activity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--variant", default="base+prefit3000", help="a variant of scripts/gpu_lip_motion.py")
    parser.add_argument("--then", type=int, default=0, help="steps at the preset's lr_audio after the prefit")
    parser.add_argument("--then-precision", choices=("32-true", "bf16-mixed"), default="32-true",
                        help="autocast of the --then steps, as the trainer's steps on a GPU (bf16-mixed): before "
                             "`TriplaneTalker.lip_regression_error` ran in full precision, they came apart in it")
    parser.add_argument("--openings", type=Path, default=None,
                        help="write the test split's inner-lip opening per frame (tracked, of the vectors that drive "
                             "the render, and of the same unsnapped) after the last stage to this .npz, and print "
                             "the correlation with the tracked opening and the ratio of the standard deviations, "
                             "the means over each of --passages and over the other frames, and how far each set of "
                             "vectors (the tracked test frames' too) lies from its nearest training frame, in units "
                             "of the training frames' own spacing")
    parser.add_argument("--passages", type=lambda text: [tuple(map(int, part.split("-"))) for part in text.split(",")],
                        default=[], help="test frame ranges FIRST-LAST (inclusive, comma-separated), e.g. "
                                         "43-57,103-118")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=None, help="the preset's training seed by default")
    parser.add_argument("--size", type=int, default=64, help="frame size the clips load at (the regressions read "
                                                             "no pixels)")
    args = parser.parse_args()
    model_config, train_config = variant_configs(args.variant)
    if model_config.lips is None or model_config.audio_token != "lips":
        parser.error(f"{args.variant} is not in lip mode")
    seed = train_config.seed if args.seed is None else args.seed
    normalize = model_config.audio.normalize
    manifest, train_clip = load_clip(args.dataset, "train", size=args.size, normalize_audio=normalize)
    test_clip = load_clip(args.dataset, "test", size=args.size, normalize_audio=normalize)[1]
    device = torch.device(args.device)
    train_clip, test_clip = train_clip.to(device), test_clip.to(device)
    model_config = dataclasses.replace(model_config, audio=dataclasses.replace(model_config.audio,
                                                                               feature_dim=manifest.audio.dim))
    torch.manual_seed(seed)  # as the trainer: the same initial weights
    model = TriplaneTalker(model_config).to(device)
    model.lips.fit(train_clip.mouth_shapes)
    versions = _audio_versions(args.dataset, manifest, train_clip, train_config, normalize)
    batch = train_config.lip_batch or train_config.batch_size
    stages = [("prefit", train_config.lip_prefit_steps, train_config.lip_prefit_lr, seed + 1),
              ("then", args.then, train_config.lr_audio, seed + 2)]
    calibrate_lips(model, train_clip)
    eval_frames = train_config.eval_frames
    activity = speech_activity(load_audio(args.dataset / AUDIO_WAV), manifest.num_frames, manifest.fps)
    print(json.dumps({"stage": "start", "steps": 0, **scores(model, train_clip, test_clip, eval_frames, activity)}),
          flush=True)
    for stage, steps, lr, stage_seed in stages:
        if steps == 0:
            continue
        started = time.perf_counter()
        with autocast(args.then_precision if stage == "then" else "32-true", device):
            log = prefit_lips(model, train_clip, steps, lr, batch, stage_seed, versions,
                              **({"patience": train_config.lip_prefit_patience,
                                  "min_gain": train_config.lip_prefit_min_gain} if stage == "prefit" else {}))
        calibrate_lips(model, train_clip)
        print(json.dumps({"stage": stage, "steps": len(log.losses), "kept_step": log.kept_step,
                          "held_out_checks": log.held_out, "lr": lr, "seconds": time.perf_counter() - started,
                          "loss_last": sum(log.losses[-100:]) / len(log.losses[-100:]),
                          **scores(model, train_clip, test_clip, eval_frames, activity)}), flush=True)
    if args.openings is not None:
        audio = audio_context(test_clip.audio_features, test_clip.indices)
        lips = model.lips
        with torch.no_grad():
            vectors = {"tracked": lips.coefficients(test_clip.mouth_shapes),
                       "driving": model.clip_lip_vectors(audio)}
            with unsnapped(model):
                vectors["unsnapped"] = model.clip_lip_vectors(audio)
            taught = lips.coefficients(train_clip.mouth_shapes).cpu()  # the training frames' lip vectors
            nearest = {name: nearest_frame(value.cpu(), taught, lips.scale.cpu())
                       for name, value in vectors.items()}
            openings = {"tracked": shape_opening(test_clip.mouth_shapes).cpu().numpy(),
                        **{name: shape_opening(lips.shapes(vectors[name])).cpu().numpy()
                           for name in ("driving", "unsnapped")}}
        np.savez(args.openings, **openings)
        other = np.ones(len(test_clip), dtype=bool)
        row = {f"{name}/{measure}": value for name in ("driving", "unsnapped") for measure, value in (
            ("correlation", float(np.corrcoef(openings["tracked"], openings[name])[0, 1])),
            ("std_ratio", float(openings[name].std() / openings["tracked"].std())))}
        row.update({f"{name}/nearest_frame": value for name, value in nearest.items()})
        for first, last in args.passages:
            other[first:last + 1] = False
            row.update({f"{first}-{last}/{name}": float(values[first:last + 1].mean())
                        for name, values in openings.items()})
        row.update({f"other/{name}": float(values[other].mean()) for name, values in openings.items()})
        print(json.dumps({"stage": "openings", **row}), flush=True)


if __name__ == "__main__":
    main()
