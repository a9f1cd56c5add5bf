"""Why the lips don't move, and what makes them: train one `fast` variant for a fixed time, measure the diagnostics
of docs/lip-motion.md on the GPU, and render the videos the CPU machine scores with `deltaplane evaluate --pred/--gt`
(mouth motion, LMD, sync: dlib/mediapipe are not on the GPU image).

    python scripts/gpu_lip_motion.py DATASET AUDIO_DIR WORK --variant lips_norm --minutes 6

Writes $OUT/VARIANT.tar, VARIANT_cross.tar and VARIANT_still.tar (test.mp4 = the test split with its own audio and cameras, test_gt.mp4,
test_still_tokens.mp4 = test.mp4 with the eye, angle and landmark tokens held neutral, cross_NAME.mp4 per
file of AUDIO_DIR with the training video's tokens and cameras, still_NAME.mp4 the same from one camera
(--still-camera), log.jsonl, diagnostics.json), with --views also VARIANT_view.tar (view_NAME.mp4: the test split
with its own audio and tokens from each novel camera of `deltaplane evaluate`'s default views, and views.png, the
sheet of scripts/render_views.py) and prints the diagnostics as one JSON line. With the lip snap on (`LipConfig.snap`:
the `fast` preset's default, or a variant part `snapH`) it also writes, from the same weights with the snap switched
off, test_unsnapped.mp4 and plain_NAME.mp4 (as still_NAME.mp4), in VARIANT_plain.tar, so the A/B of the snap needs
no second training run, test_teacher_snapped.mp4 (the tracked lips snapped) and, with `--snap-widths W,...`,
test_snapW.mp4 (snapped at another bandwidth, the gain recalibrated), and with `LipConfig.per_utterance`
test_calibrated.mp4 (the test split driven with the calibrated gain instead of its own). `--sampling` adds the
same weights rendered with random ray samples (as EG3D renders; fixed ones are the default) and with twice the
samples (test_random.mp4, test_samples2x.mp4 and, with --views, view_pitch-20_random.mp4 and so on) and the random
samples' own noise (`sampling/…`). `--x-blur` adds the test split with the xy or the xz plane's features blurred along
x inside the mouth box (test_xblur_xy.mp4, test_xblur_xz.mp4): which plane draws the closed mouths' white streaks.
A training that collapses for good (`TrainingDiverged`) leaves $OUT/VARIANT_log.jsonl: every logged step's loss
terms, opacity and deltaplane size. `--stage train` then `--stage render` split the training and the measuring into
two device calls (the machine keeps WORK while it stays warm), so the training can have a whole 10-minute call.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors import safe_open

from deltaplane.audio.io import audio_files, load_audio
from deltaplane.checkpoint import latest_checkpoint, load_checkpoint
from deltaplane.data.dataset import ClipData, audio_context, load_clip, make_batch
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.evaluation.run import DEFAULT_VIEWS, _split_audio, parse_views
from deltaplane.fields.conditions import TOKEN_NAMES, ConditionEncoder
from deltaplane.fields.triplane import blur_along_x, box_weights
from deltaplane.inference import (audio_windows, camera_path, driving_conditions, load_run, plate_warp_path,
                                  render_clip, to_uint8)
from deltaplane.media.video import VideoWriter, output_frame_count
from deltaplane.models.triplane_talker import MOUTH_BOX_EDGE, TORSO_FOLLOW
from deltaplane.presets import get_preset
from deltaplane.structs import Conditions, NeutralTokens
from deltaplane.training.evaluation import evaluate_clip
from deltaplane.training.guard import TrainingDiverged
from deltaplane.training.precision import autocast
from deltaplane.training.registration import SHIFTS
from deltaplane.training.trainer import TrainResult, calibrate_lips, train
from deltaplane.training.windows import WindowConfig
from lip_regression_ablation import opening, opening_ratio, speech_activity
from render_views import view_rows


def variant_configs(name: str, preset: str = "fast"):
    """The fast preset with the changes a variant names (joined by '+'): lips, audio (Talk3D's audio token),
    norm (per-utterance feature normalisation), concat (the audio's window codes mixed by an MLP over them side by
    side, `AudioEncoderConfig.mixing`), mouthN (mouth loss weight N), mouthboxN (mouth-box L1 weight N),
    eyesboxN (L1 weight N in the box around the brows and eyes, `LossWeights.eyes_box`),
    audiolrX (learning rate X of the audio → lip regression), seedN (training seed N: arms of one call that differ
    in it alone give one configuration's spread), prefitN (N steps fitting the regressions alone
    before the renderer's first, `TrainConfig.lip_prefit_steps`), patienceN (the prefit stops after N checks of
    the calibration blocks without a new best, `TrainConfig.lip_prefit_patience`), mingainX (undone unless its
    best lowered their error by a share X, `TrainConfig.lip_prefit_min_gain`), lipbatchN (its
    frames per step, `TrainConfig.lip_batch`; 0: the rendered batch's), regsN (N averaged regressions,
    `LipConfig.regressions`), augN (N speaker-augmented audio copies), isolateN
    (lower-face rays dilated by N pixels give the identity planes no gradient), dropP (token dropout P), sampleP (scheduled sampling of
    the predicted lip vector on a share P of frames), mplanesK (K audio-mixed
    mouth planes), dtvN (total variation of the deltaplane at weight N, `LossWeights.delta_tv`), closedxN (the
    closed mouths' x-variation on the xy plane at weight N, `LossWeights.closed_mouth_x`), cmboxN (the mouth-box
    L1 of the closed mouths at weight N, `LossWeights.closed_mouth_box`), mxblurS (the xy plane
    blurred along x in the mouth box at σ S texels when rendering, `TriplaneTalkerConfig.mouth_x_blur`), lapN
    (Laplacian-pyramid L1 weight N), advN (adversarial patch term weight N), advstartK (the renderer gets it from step
    K), advshareS (or from a share S of the run, `AdversarialConfig.start_share`; the preset's is 0.25 since session
    52), fmN (feature matching through its discriminator at weight N, `LossWeights.feature_match`, from the same start;
    the preset's is 2 since session 53: `prefit0+advshare1+fm0` is the preset of runs 1–51, `fm0` that of runs 52–53),
    fmstartK (feature matching from step K, `AdversarialConfig.matching_start`), nobox (mouth planes everywhere, as in
    run 5), boxaudio (the audio token reaches only the mouth planes, `TriplaneTalkerConfig.audio_in_mouth_box`), noxz
    (no mouth planes on the xz plane, `TriplaneTalkerConfig.mouth_planes_on`; xyonly: only on the xy plane; allplanes:
    on all three), confine (the mouth planes confined to their 3D box, `TriplaneTalkerConfig.mouth_confined`; noconfine:
    not confined), nowarm (no deltaplane warm-up; warmN: N steps), brows (the brows' heights in the landmark token,
    `ConditionEncoderConfig.brows`), ranges (the conditions in their training ranges,
    `ConditionEncoderConfig.fitted_ranges`),
    plate (head and torso over the background plate, docs/background.md), fill (the whole frame, over the plate
    where the field leaves a ray empty, docs/novel-views.md "Run 24"), alphaN (its opacity loss weight N),
    winN[xS] (training windows of N output pixels, a share S of them over the face, `TrainConfig.window`; the
    `fast` preset's is win320 since session 56; nowin: whole frames),
    novdepthN / novcolorN (pseudo multi-view depth / colour weight N, docs/novel-views.md), solidN (the solid-body
    term at weight N, docs/novel-views.md "A solid head"; solidnomouth: not in the mouth box; thickD: solid to D
    behind the surface, `SolidConfig.thickness`, with `body_depth` at least D), behindN (the
    empty-behind term at weight N, docs/novel-views.md "Run 12"), spreadN (the
    depth-spread weight N), snapH (the calibrated lip vector pulled among the training frames' mouths, bandwidth H,
    `LipConfig.snap`; nosnap: no snap, taught and driven with the lip vectors as they are), tsnapP (the renderer
    taught with snapped vectors on a share P of frames,
    `LipConfig.teacher_snap`), utt (each driving clip with its own lip gain, `LipConfig.per_utterance`), resN (N²
    rays, the super-resolution upsampling the rest of the way to the same output: res256 = one ×2 block; the `fast`
    preset's since run 12, res128 = the earlier two blocks), marchN (N coarse + N importance samples per ray), regN
    (per-frame shifts of the renders up to N px, `TrainConfig.registration`, docs/sharpness.md "Registration"),
    keepK (the snap leaves the K leading lip components as they are, `LipConfig.snap_keep`), head (the depth prior
    and the pseudo multi-view terms on the head proxy's points too, `TriplaneTalkerConfig.head_proxy`), headc and
    headid (the same, measured from the mesh's centre, and also teaching the identity planes only:
    `TriplaneTalkerConfig.head_proxy_apart`), fixtailP
    (fixed ray samples for the last share P of the training, `TrainConfig.fixed_samples_from`), torso (a torso of its
    own that follows 0.1 of the tracked yaw and 0.6 of the pitch, `TriplaneTalkerConfig.torso_follow`; torsoYxP: shares
    Y and P), noangle (the
    frontal angle token for every frame, `ConditionEncoderConfig.angles`), chunkN (N rays per chunk of the march,
    `TriplaneTalkerConfig.ray_chunk`), compile (the training step compiled, `TrainConfig.compile`), srinN or
    srinNxC (N residual blocks of C channels, 64 by default, in the super-resolution at the rendering resolution,
    `SuperResolutionConfig.input_blocks`, docs/sharpness.md), idx2 (the identity planes at twice the resolution,
    `TriplaneTalkerConfig.identity_scale`, docs/sharpness.md).
    `solid`, `snap`, `res256`, `lipbatch32`, `regs4`, `xyonly`, `confine`, `dtv0.05`, `tsnap1`, `utt` and
    `novcolor4` are on in today's `fast` preset."""
    model, train_config = get_preset(preset)
    for part in name.split("+"):
        if part == "lips":
            model = dataclasses.replace(model, audio_token="lips")
        elif part == "audio":
            model = dataclasses.replace(model, audio_token="audio")
        elif part == "norm":
            model = dataclasses.replace(model, audio=dataclasses.replace(model.audio, normalize=True))
        elif part == "concat":
            model = dataclasses.replace(model, audio=dataclasses.replace(model.audio, mixing="concat"))
        elif part.startswith("mouthbox"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, mouth_box=float(part[8:])))
        elif part.startswith("eyesbox"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, eyes_box=float(part[7:])))
        elif part.startswith("mouth"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, mouth=float(part[5:])))
        elif part.startswith("regs"):
            model = dataclasses.replace(model, lips=dataclasses.replace(model.lips, regressions=int(part[4:])))
        elif part.startswith("lipbatch"):
            train_config = dataclasses.replace(train_config, lip_batch=int(part[8:]))
        elif part.startswith("prefit"):
            train_config = dataclasses.replace(train_config, lip_prefit_steps=int(part[6:]))
        elif part.startswith("seed"):
            train_config = dataclasses.replace(train_config, seed=int(part[4:]))
        elif part.startswith("patience"):
            train_config = dataclasses.replace(train_config, lip_prefit_patience=int(part[8:]))
        elif part.startswith("mingain"):
            train_config = dataclasses.replace(train_config, lip_prefit_min_gain=float(part[7:]))
        elif part.startswith("audiolr"):
            train_config = dataclasses.replace(train_config, lr_audio=float(part[7:]))
        elif part.startswith("aug"):
            augment = dataclasses.replace(train_config.speaker_augment, copies=int(part[3:]))
            train_config = dataclasses.replace(train_config, speaker_augment=augment)
        elif part.startswith("mplanes"):
            model = dataclasses.replace(model, mouth_planes=int(part[7:]))
        elif part == "noxz":
            model = dataclasses.replace(model, mouth_planes_on=(0, 2))
        elif part == "xyonly":
            model = dataclasses.replace(model, mouth_planes_on=(0,))
        elif part == "allplanes":
            model = dataclasses.replace(model, mouth_planes_on=(0, 1, 2))
        elif part == "confine":
            model = dataclasses.replace(model, mouth_confined=True)
        elif part == "noconfine":
            model = dataclasses.replace(model, mouth_confined=False)
        elif part == "boxaudio":
            model = dataclasses.replace(model, audio_in_mouth_box=True)
        elif part == "nobox":
            model = dataclasses.replace(model, mouth_box=None)
        elif part.startswith("isolate"):
            model = dataclasses.replace(model, isolate_lower_face=int(part[7:]))
        elif part.startswith("dtv"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, delta_tv=float(part[3:])))
        elif part.startswith("closedx"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, closed_mouth_x=float(part[7:])))
        elif part.startswith("cmbox"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, closed_mouth_box=float(part[5:])))
        elif part.startswith("mxblur"):
            model = dataclasses.replace(model, mouth_x_blur=float(part[6:]))
        elif part.startswith("fmstart"):  # the feature-matching term from step K
            adversarial = dataclasses.replace(train_config.adversarial, matching_start=int(part[7:]))
            train_config = dataclasses.replace(train_config, adversarial=adversarial)
        elif part.startswith("fm"):  # pix2pixHD's feature matching through the patch discriminator
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, feature_match=float(part[2:])))
        elif part.startswith("lap"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, laplacian=float(part[3:])))
        elif part.startswith("advstart"):
            adversarial = dataclasses.replace(train_config.adversarial, start=int(part[8:]))
            train_config = dataclasses.replace(train_config, adversarial=adversarial)
        elif part.startswith("advshare"):
            adversarial = dataclasses.replace(train_config.adversarial, start_share=float(part[8:]))
            train_config = dataclasses.replace(train_config, adversarial=adversarial)
        elif part.startswith("adv"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, adversarial=float(part[3:])))
        elif part.startswith("sample"):
            train_config = dataclasses.replace(train_config, lip_sampling=float(part[6:]))
        elif part.startswith("drop"):
            train_config = dataclasses.replace(train_config, token_dropout=float(part[4:]))
        elif part in ("plate", "fill"):
            model = dataclasses.replace(model, background=part)
        elif part == "head":
            model = dataclasses.replace(model, head_proxy=True)
        elif part in ("headc", "headid"):  # the head proxy apart from the mesh's centring (and the deltaplane)
            model = dataclasses.replace(model, head_proxy=True,
                                        head_proxy_apart="centring" if part == "headc" else "planes")
        elif part.startswith("alpha"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, alpha=float(part[5:])))
        elif part.startswith("novdepth"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, novel_depth=float(part[8:])))
        elif part.startswith("spread"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, depth_spread=float(part[6:])))
        elif part == "solidnomouth":
            model = dataclasses.replace(model, solid=dataclasses.replace(model.solid, skip_mouth=True))
        elif part.startswith("thick"):
            depth = float(part[5:])
            model = dataclasses.replace(model, solid=dataclasses.replace(
                model.solid, thickness=depth, body_depth=max(depth, model.solid.body_depth)))
        elif part.startswith("solid"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, solid=float(part[5:])))
        elif part.startswith("behind"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, behind=float(part[6:])))
        elif part.startswith("novcolor"):
            model = dataclasses.replace(model, loss=dataclasses.replace(model.loss, novel_color=float(part[8:])))
        elif part.startswith("keep"):
            model = dataclasses.replace(model, lips=dataclasses.replace(model.lips, snap_keep=int(part[4:])))
        elif part == "utt":
            model = dataclasses.replace(model, lips=dataclasses.replace(model.lips, per_utterance=True))
        elif part == "nosnap":
            model = dataclasses.replace(model, lips=dataclasses.replace(model.lips, snap=None, teacher_snap=0.0))
        elif part.startswith("tsnap"):
            model = dataclasses.replace(model, lips=dataclasses.replace(model.lips, teacher_snap=float(part[5:])))
        elif part.startswith("snap"):
            model = dataclasses.replace(model, lips=dataclasses.replace(model.lips, snap=float(part[4:])))
        elif part == "ranges":
            model = dataclasses.replace(model, conditions=dataclasses.replace(model.conditions, fitted_ranges=True))
        elif part == "brows":
            model = dataclasses.replace(model, conditions=dataclasses.replace(model.conditions, brows=True))
        elif part == "noangle":
            model = dataclasses.replace(model, conditions=dataclasses.replace(model.conditions, angles=False))
        elif part.startswith("chunk"):  # rays per chunk of the march
            model = dataclasses.replace(model, ray_chunk=int(part[5:]))
        elif part == "idx2":  # identity planes at twice the resolution
            model = dataclasses.replace(model, identity_scale=2)
        elif part.startswith("srin"):  # srinN[xC]: N residual blocks of C channels at the rendering resolution
            blocks, _, channels = part[4:].partition("x")
            superres = dataclasses.replace(model.superres, input_blocks=int(blocks),
                                           input_channels=int(channels or model.superres.input_channels))
            model = dataclasses.replace(model, superres=superres)
        elif part.startswith("res"):  # rendering resolution N with the super-resolution making up the rest to 512²
            size = int(part[3:])
            superres = dataclasses.replace(model.superres, input_resolution=size,
                                           upsamplings=(model.output_resolution // size).bit_length() - 1)
            model = dataclasses.replace(model, render_resolution=size, superres=superres)
        elif part.startswith("march"):
            model = dataclasses.replace(model, volume=dataclasses.replace(model.volume, num_coarse=int(part[5:]),
                                                                          num_importance=int(part[5:])))
        elif part == "nowin":  # whole training frames
            train_config = dataclasses.replace(train_config, window=None)
        elif part.startswith("win"):  # winN[xS]: windows of N output pixels, a share S of them over the face
            size, _, share = part[3:].partition("x")
            window = WindowConfig(int(size), **({"face_share": float(share)} if share else {}))
            train_config = dataclasses.replace(train_config, window=window)
        elif part.startswith("reg"):
            registration = dataclasses.replace(train_config.registration, max_shift=float(part[3:]))
            train_config = dataclasses.replace(train_config, registration=registration)
        elif part.startswith("torso"):  # torso: TORSO_FOLLOW; torsoYxP: shares Y of the yaw and P of the pitch
            shares = tuple(float(share) for share in part[5:].split("x")) if part[5:] else TORSO_FOLLOW
            model = dataclasses.replace(model, torso_follow=shares)
        elif part.startswith("fixtail"):
            train_config = dataclasses.replace(train_config, fixed_samples_from=1.0 - float(part[7:]))
        elif part == "compile":
            train_config = dataclasses.replace(train_config, compile=True)
        elif part == "nowarm":
            train_config = dataclasses.replace(train_config, warmup_delta_steps=0)
        elif part.startswith("warm"):  # warmN: the deltaplane warm-up of N steps
            train_config = dataclasses.replace(train_config, warmup_delta_steps=int(part[4:]))
        elif part != "base":
            raise SystemExit(f"unknown variant part {part!r}")
    return model, train_config


@contextlib.contextmanager
def lip_config(model, **changes):
    """The model's lip vectors as they would be with `changes` to its `LipConfig` (same weights, same gain):
    `snap=None, teacher_snap=0.0` without the snap, `per_utterance=False` with the calibrated gain on every clip."""
    config = model.lips.config
    model.lips.config = dataclasses.replace(config, **changes)
    try:
        yield
    finally:
        model.lips.config = config


SAMPLINGS = ("random", "samples2x")
"""The renders of `--sampling`: test_NAME.mp4, and view_VIEW_NAME.mp4 with --views."""


@contextlib.contextmanager
def sampling(model, name: str):
    """The model rendered with other ray samples (same weights): "random" for EG3D's random samples instead of
    fixed ones (`VolumeRenderConfig.jitter_at_inference`), "samples2x" for twice the samples per ray."""
    config = model.config
    volume = config.volume
    changes = ({"jitter_at_inference": True} if name == "random" else
               {"num_coarse": 2 * volume.num_coarse, "num_importance": 2 * volume.num_importance})
    model.config = dataclasses.replace(config, volume=dataclasses.replace(volume, **changes))
    try:
        yield
    finally:
        model.config = config


X_BLURS = {"xy": 0, "xz": 1}
"""The renders of `--x-blur`: the plane (`PLANE_AXES` index) of `x_blur`, the two whose columns are world x; the zy
plane is constant along x and cannot draw a pattern that varies with it."""


@contextlib.contextmanager
def x_blur(model, plane: int, sigma: float = 2.0):
    """The model's rendered planes (identity + deltaplane + mouth planes) blurred along x on plane `plane` inside
    the mouth box's footprint (`fields.triplane.blur_along_x`; same weights; on the xy plane what
    `TriplaneTalkerConfig.mouth_x_blur` does). Which plane's blur takes the closed mouths' white streaks away says
    which plane draws them."""
    box = model.config.mouth_box
    if box is None:
        raise SystemExit("--x-blur needs a model with a mouth box (TriplaneTalkerConfig.mouth_box)")
    mask = box_weights(box, model.config.plane_resolution, model.config.box_warp, MOUTH_BOX_EDGE)[plane, 0]
    mask = mask.to(model.identity_planes.device)
    planes = model.planes

    def blurred_planes(tokens, encoded_identity=None):
        full, delta = planes(tokens, encoded_identity=encoded_identity)
        return blur_along_x(full, plane, mask, sigma), delta

    model.planes = blurred_planes  # an instance attribute over the method, removed below
    try:
        yield
    finally:
        del model.planes


@torch.no_grad()
def sampling_noise(model, conditions: Conditions, cam2world: torch.Tensor) -> dict[str, float]:
    """What the random ray samples alone change: the same frames rendered with two seeds, in grey levels (0–255) of
    the 512² output. Sparse speckle (a thin surface some rays miss) shows in the share of pixels that move by more
    than 32 levels more than in the mean."""
    with sampling(model, "random"):
        first, second = (np.stack([to_uint8(rgb) for rgb, _ in render_clip(model, conditions, cam2world, seed=seed)])
                         for seed in (0, 1))
    change = np.abs(first.astype(np.float32) - second.astype(np.float32)).mean(-1)
    return {"sampling/noise_mean": float(change.mean()), "sampling/speckle_share": float((change > 32).mean())}


def unsnapped(model):
    """`lip_config` without `LipConfig.snap`."""
    return lip_config(model, snap=None, teacher_snap=0.0)


@contextlib.contextmanager
def snapped_at(model, clip: ClipData, width: float):
    """The model's lip vectors snapped with a bandwidth of `width` frame spacings (`LipConfig.snap`) instead of its
    own, the gain recalibrated on `clip` (the training split) as training ends: what a run trained with `snapW`
    draws, from the same weights (the snap changes no weight unless `teacher_snap` or `TrainConfig.lip_sampling`
    uses it, both off in the `fast` preset)."""
    lips = model.lips
    config, bandwidth, gain = lips.config, lips.bandwidth.clone(), lips.gain.clone()
    lips.config = dataclasses.replace(config, snap=width)
    lips.bandwidth.mul_(width / config.snap)
    calibrate_lips(model, clip)
    try:
        yield
    finally:
        lips.config = config
        lips.bandwidth.copy_(bandwidth)
        lips.gain.copy_(gain)


@torch.no_grad()
def diagnostics(model, clip: ClipData, positions: torch.Tensor) -> dict[str, float]:
    """Deltaplane size next to the identity planes, the share of cross-attention on each token, the field's mean
    opacity behind the body (`TriplaneTalker.behind_term` at weight 1: matter where side views show it beside the
    head) and, in lip mode, the lip vector's calibrated gain. Per token, where a deltaplane that no longer changes
    over the frames (`delta_temporal_std` near 0 in 6 of 24 arms of runs 51–54) lost its conditions: how much the token
    itself changes over the frames (`token_std/NAME`), the share of its encoder's hidden ReLU units that are 0 on
    every frame (`dead_units/NAME`: the encoder's output can no longer change) and the mean change of the
    deltaplane when the token is held at its mean over the frames (`delta_response/NAME`)."""
    batch = make_batch(clip, positions, model.config.render_resolution)
    tokens = model.tokens(batch.conditions)
    encoded, heard = model.encode_identity().expand(tokens.shape[0]), model.heard(tokens)
    delta, attention = model.predictor.decode(encoded, heard, return_attention=True)
    response = {}
    for index, name in enumerate(TOKEN_NAMES):
        held = heard.clone()
        held[:, index] = heard[:, index].mean(0)
        change = model.predictor.decode(encoded, held) - delta
        response[f"delta_response/{name}"] = change.float().abs().mean().item()
        response[f"token_std/{name}"] = heard[:, index].float().std(0).mean().item()
    identity_rms = model.identity_planes.float().square().mean().sqrt().item()
    shares = attention.float().mean(dim=(0, 1, 2, 3))  # [tokens]
    planes = model.planes(tokens)[0]
    output = model.render(planes, batch.cameras, plate_warp=batch.plate_warp,
                          torso=model.torso_transforms(batch.conditions.angles))
    behind = model.behind_term(planes, output, batch, torch.Generator().manual_seed(0)).item()
    return {"delta_rms": delta.float().square().mean().sqrt().item(), "identity_rms": identity_rms,
            "delta_temporal_std": delta.float().std(dim=0).mean().item(), "behind_opacity": behind,
            **{f"attention/{name}": value for name, value in zip(TOKEN_NAMES, shares.tolist())},
            "attention/audio_max": attention[..., 0].float().mean(dim=(0, 1)).max().item(),
            **response, **dead_units(model.condition_encoder, batch.conditions),
            **({} if model.lips is None else {"lips/gain": model.lips.gain[0].item()})}


def dead_units(encoder: ConditionEncoder, conditions: Conditions) -> dict[str, float]:
    """`dead_units/NAME`: per condition MLP, the share of its hidden ReLU units that are 0 on every frame."""
    inputs = encoder.encoded_inputs(conditions.eye, conditions.angles, conditions.landmarks)
    shares = {}
    for name, mlp in encoder.mlps().items():
        x, dead, units = inputs[name].to(next(mlp.parameters())), 0, 0
        for layer in mlp:
            x = layer(x)
            if isinstance(layer, torch.nn.ReLU):
                dead, units = dead + int((x == 0).all(0).sum()), units + x.shape[-1]
        shares[f"dead_units/{name}"] = dead / max(units, 1)
    return shares


def precision_gap(model, clip: ClipData, positions: torch.Tensor) -> dict[str, float]:
    """The frames at `positions` rendered under the training's bf16 autocast, less the same in fp32 (evaluation's
    and inference's): a model that learnt what only bf16 computes scores better under it, as the lip regressions
    did before they ran in fp32 (docs/lip-motion.md "Run 48")."""
    exact = evaluate_clip(model, clip, positions)
    with autocast("bf16-mixed", positions.device):
        mixed = evaluate_clip(model, clip, positions)
    return {f"bf16_gap/{key.removeprefix('test/')}": mixed[key] - exact[key] for key in exact}


@torch.no_grad()
def pause_openings(model, clip: ClipData, activity: np.ndarray) -> dict[str, float | None]:
    """Mean inner-lip opening of the lip vectors (through the mouth-shape basis, no rendering) over the split's
    pauses (`speech_activity` 0) and over its speech, each over the tracked mouths' own, and its standard deviation
    over the whole split over the tracked one's: the audio's vectors as they drive test.mp4 (`clip_lip_vectors`:
    the split's own gain and the range; up to run 49 the calibrated gain instead), unsnapped and snapped, and the
    tracked vectors snapped. Where the rendered mouth opens in a pause, this says whether the lip vector asked for
    it. None where fewer than 3 frames are chosen."""
    pauses = activity[clip.indices.cpu().numpy()] == 0
    audio = audio_context(clip.audio_features, clip.indices)
    with unsnapped(model):
        unsnapped_vectors = model.clip_lip_vectors(audio)
    vectors = {"audio_unsnapped": unsnapped_vectors, "audio": model.clip_lip_vectors(audio),
               "tracked_snapped": model.lips.snapped(model.lips.coefficients(clip.mouth_shapes))}
    tracked = opening(clip.mouth_shapes.float().cpu())
    report = {}
    for name, lip_vectors in vectors.items():
        openings = opening(model.lips.shapes(lip_vectors).cpu())
        for part, chosen in (("pause", pauses), ("speech", ~pauses)):
            report[f"lips/{name}/{part}_opening_ratio"] = opening_ratio(openings, tracked, chosen)
        # what the renderer is asked to draw: the render's opening std ratio over this says how much it passes on
        report[f"lips/{name}/opening_std_ratio"] = float(openings.std() / max(tracked.std(), 1e-9))
    return report


@torch.no_grad()
def teacher_frames(model, clip: ClipData, snapped: bool = False):
    """The test split rendered from the tracked mouth shapes' lip vectors instead of the audio's (`snapped`: pulled
    among the training frames' as the audio's are, so that the snap's blending shows apart from the regression)."""
    for start in range(0, len(clip), 4):
        positions = torch.arange(start, min(start + 4, len(clip)), device=clip.frames.device)
        batch = make_batch(clip, positions, model.config.render_resolution)
        tracked = model.lips.coefficients(batch.mouth_shape)
        code = model.lips(model.lips.snapped(tracked) if snapped else tracked)
        tokens = model.tokens(batch.conditions, audio_code=code)
        output = model.render(model.planes(tokens)[0], batch.cameras, plate_warp=batch.plate_warp,
                              torso=model.torso_transforms(batch.conditions.angles))
        yield from (to_uint8(rgb) for rgb in output.rgb)


def write_video(path: Path, frames, fps: float, audio: np.ndarray) -> None:
    with VideoWriter(path, fps, audio=audio, crf=20) as writer:
        for frame in frames:
            writer.write(frame)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("audio_dir", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--variant", default="base")
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--preset", default="fast", help="tiny: a CPU smoke test of this script")
    parser.add_argument("--steps", type=int, default=None, help="training steps (the preset's by default)")
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed (the preset's by default): repeats at equal settings give the spread")
    parser.add_argument("--log-every", type=int, default=None,
                        help="steps between log.jsonl records (the preset's by default; a collapse unfolds over tens)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--stage", choices=("all", "train", "render"), default="all",
                        help="train: stop after training; render: measure and render WORK/VARIANT's trained run. Two "
                             "device calls can then give the training the whole 10-minute call")
    parser.add_argument("--teacher", action=argparse.BooleanOptionalAction, default=True,
                        help="lip mode: also render the test split from the tracked mouth shapes")
    parser.add_argument("--cross-tokens", choices=("dataset", "neutral"), default="dataset",
                        help="eye/angle/landmark tokens of the cross-driven renders: replayed from the training video "
                             "(as `deltaplane render`) or held neutral (`render --neutral`)")
    parser.add_argument("--still-camera", action="store_true",
                        help="also render every cross-driven file from one fixed training camera (still_NAME.mp4)")
    parser.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                        help="with the lip snap on, also render every file from one camera without it (plain_NAME.mp4); "
                             "--no-plain halves the cross-driven rendering time")
    parser.add_argument("--snap-widths", type=lambda text: [float(width) for width in text.split(",")], default=[],
                        help="with the lip snap on, also render the test split with the lip vectors snapped at each of "
                             "these bandwidths (comma-separated, in frame spacings; the gain recalibrated for each): "
                             "test_snapW.mp4")
    parser.add_argument("--mouth-scales", type=lambda text: [float(factor) for factor in text.split(",")],
                        default=[], help="also render the test split and the cross-driven files with the mouth "
                                         "moving each of these factors as far (comma-separated; `render "
                                         "--mouth-scale`): test_mouthxF.mp4, crossxF_NAME.mp4")
    parser.add_argument("--sampling", action="store_true",
                        help="also render the test split (and with --views the pitch −20° and yaw +30° views) with "
                             "random ray samples and with twice the samples (test_random.mp4, test_samples2x.mp4, "
                             "...), "
                             "and report the random samples' own noise on 16 test frames (sampling/...)")
    parser.add_argument("--x-blur", action="store_true",
                        help="also render the test split with the xy plane's, then the xz plane's features blurred "
                             "along x inside the mouth box (test_xblur_xy.mp4, test_xblur_xz.mp4): which one draws "
                             "the white streaks in closed mouths (docs/lip-motion.md)")
    parser.add_argument("--views", action="store_true",
                        help="also render the test split from the novel cameras of `deltaplane evaluate` "
                             "(view_NAME.mp4; scored by scripts/score_lip_renders.py) and the view sheet views.png")
    args = parser.parse_args()
    out = Path(os.environ.get("OUT", "."))
    device = torch.device(args.device)
    model_config, train_config = variant_configs(args.variant, args.preset)
    if args.log_every is not None:
        train_config = dataclasses.replace(train_config, log_every=args.log_every)
    if args.steps is not None:
        train_config = dataclasses.replace(train_config, steps=args.steps)
    if args.seed is not None:
        train_config = dataclasses.replace(train_config, seed=args.seed)
    run_dir = args.work / args.variant.replace("+", "_")
    started = time.perf_counter()
    if args.stage == "render":
        trained = load_checkpoint(latest_checkpoint(run_dir), with_training_state=False)
        result = TrainResult(run_dir, trained.step, trained.meta["metrics"])
    else:
        try:
            result = train(args.dataset, run_dir, model_config,
                           dataclasses.replace(train_config, max_minutes=args.minutes), args.preset, device,
                           progress=False)
        except TrainingDiverged:  # the per-step log (loss terms, opacity, deltaplane size) says what ran away
            shutil.copy(run_dir / "log.jsonl", out / f"{run_dir.name}_log.jsonl")
            raise
        if args.stage == "train":
            print(json.dumps({"variant": args.variant, "steps": result.step, **result.metrics}))
            return
    model, run_config, driving = load_run(run_dir, device)
    manifest, test = load_clip(args.dataset, "test", size=model.config.output_resolution,
                               normalize_audio=model.config.audio.normalize, brows=model.config.conditions.brows)
    _, train_clip = load_clip(args.dataset, "train", size=model.config.output_resolution,
                              normalize_audio=model.config.audio.normalize, brows=model.config.conditions.brows)
    test, train_clip = test.to(device), train_clip.to(device)
    spaced = lambda clip: torch.from_numpy(np.linspace(0, len(clip) - 1, 16).round().astype(np.int64)).to(device)
    report = {"variant": args.variant, "steps": result.step, **result.metrics,
              **{key.replace("test/", "train/"): value for key, value in
                 evaluate_clip(model, train_clip, spaced(train_clip)).items()},
              **diagnostics(model, test, spaced(test)), **precision_gap(model, test, spaced(test))}
    if model.lips is not None:
        activity = speech_activity(load_audio(args.dataset / AUDIO_WAV), manifest.num_frames, manifest.fps)
        report.update(pause_openings(model, test, activity))
    (run_dir / "diagnostics.json").write_text(json.dumps(report, indent=1))  # kept if the rendering runs out of time
    with safe_open(str(latest_checkpoint(run_dir) / "training_state.safetensors"), "pt") as state:
        if SHIFTS in state.keys():  # the learned per-frame shifts, by training frame (checkpoints stay on the device)
            np.save(run_dir / "registration_shifts.npy", state.get_tensor(SHIFTS).numpy())
    fps = manifest.fps
    videos = {}
    conditions = Conditions(audio=audio_context(test.audio_features, test.indices), eye=test.eye, angles=test.angles,
                            landmarks=test.landmarks)
    samples = _split_audio(args.dataset, test.indices.tolist(), fps)
    if model.lips is not None:  # the gain the test passage is driven with (`LipConfig.per_utterance`)
        with torch.no_grad():
            raw = model.predicted_lips(conditions.audio.to(model.identity_planes.device), calibrated=False)
            report["lips/test_utterance_gain"] = model.lips.utterance_gain(raw)[0].item()
    write_video(run_dir / "test.mp4", (to_uint8(rgb) for rgb, _ in render_clip(model, conditions, test.cam2world,
                                                                               plate_warp=test.plate_warps)),
                fps, samples)
    snapping = model.lips is not None and model.lips.config.snap is not None
    if snapping:
        with unsnapped(model):
            write_video(run_dir / "test_unsnapped.mp4", (to_uint8(rgb) for rgb, _ in render_clip(
                model, conditions, test.cam2world, plate_warp=test.plate_warps)), fps, samples)
        videos["test_unsnapped"] = "test_unsnapped.mp4"
        for width in args.snap_widths:
            with snapped_at(model, train_clip, width):
                report[f"lips/gain_snap{width:g}"] = model.lips.gain[0].item()
                write_video(run_dir / f"test_snap{width:g}.mp4", (to_uint8(rgb) for rgb, _ in render_clip(
                    model, conditions, test.cam2world, plate_warp=test.plate_warps)), fps, samples)
            videos[f"test_snap{width:g}"] = f"test_snap{width:g}.mp4"
    write_video(run_dir / "test_gt.mp4", (frame.permute(1, 2, 0).cpu().numpy() for frame in test.frames), fps,
                samples)
    videos.update(test="test.mp4", test_gt="test_gt.mp4")
    # The same audio with the eye/angle/landmark tokens held neutral: if the mouth stops following the speech, it
    # was following those tokens (head and face motion of the original video), not the audio.
    still = conditions.neutralized(torch.ones(len(test), dtype=torch.bool, device=device),
                                   NeutralTokens.of(driving.eye.to(device), driving.landmarks.to(device)))
    write_video(run_dir / "test_still_tokens.mp4",
                (to_uint8(rgb) for rgb, _ in render_clip(model, still, test.cam2world, plate_warp=test.plate_warps)),
                fps, samples)
    videos["test_still_tokens"] = "test_still_tokens.mp4"
    if args.sampling:  # is the speckle on thin surfaces the random ray samples'? (docs/novel-views.md, run 32)
        chosen = spaced(test)
        report.update(sampling_noise(model, Conditions(*(getattr(conditions, name)[chosen] for name in (
            "audio", "eye", "angles", "landmarks"))), test.cam2world[chosen]))
        for name in SAMPLINGS:
            with sampling(model, name):
                write_video(run_dir / f"test_{name}.mp4", (to_uint8(rgb) for rgb, _ in render_clip(
                    model, conditions, test.cam2world, plate_warp=test.plate_warps)), fps, samples)
            videos[f"test_{name}"] = f"test_{name}.mp4"
    if args.x_blur:
        for name, plane in X_BLURS.items():
            with x_blur(model, plane):
                write_video(run_dir / f"test_xblur_{name}.mp4", (to_uint8(rgb) for rgb, _ in render_clip(
                    model, conditions, test.cam2world, plate_warp=test.plate_warps)), fps, samples)
            videos[f"test_xblur_{name}"] = f"test_xblur_{name}.mp4"
    if model.lips is not None and model.lips.config.per_utterance:  # the clip's own gain against the calibrated one
        with lip_config(model, per_utterance=False):
            write_video(run_dir / "test_calibrated.mp4", (to_uint8(rgb) for rgb, _ in render_clip(
                model, conditions, test.cam2world, plate_warp=test.plate_warps)), fps, samples)
        videos["test_calibrated"] = "test_calibrated.mp4"
    for factor in args.mouth_scales if model.lips is not None else ():
        with lip_config(model, mouth_scale=factor):
            write_video(run_dir / f"test_mouthx{factor:g}.mp4", (to_uint8(rgb) for rgb, _ in render_clip(
                model, conditions, test.cam2world, plate_warp=test.plate_warps)), fps, samples)
        videos[f"test_mouthx{factor:g}"] = f"test_mouthx{factor:g}.mp4"
    if model.lips is not None and args.teacher:  # the renderer told the tracked mouth shapes: does it draw them?
        write_video(run_dir / "test_teacher.mp4", teacher_frames(model, test), fps, samples)
        videos["test_teacher"] = "test_teacher.mp4"
        if snapping:
            write_video(run_dir / "test_teacher_snapped.mp4", teacher_frames(model, test, snapped=True), fps, samples)
            videos["test_teacher_snapped"] = "test_teacher_snapped.mp4"
    if args.views:  # the cameras and renderer of `deltaplane evaluate RUN --views`, scored on the CPU machine
        for name, spec in parse_views(DEFAULT_VIEWS).items():
            if spec == "dataset":
                continue
            cam2world = camera_path(spec, len(test), driving)
            write_video(run_dir / f"view_{name}.mp4",
                        (to_uint8(rgb) for rgb, _ in render_clip(model, conditions, cam2world)), fps, samples)
            videos[f"view_{name}"] = f"view_{name}.mp4"
            for sampled in SAMPLINGS if args.sampling and name in ("pitch-20", "yaw+30") else ():
                with sampling(model, sampled):
                    write_video(run_dir / f"view_{name}_{sampled}.mp4",
                                (to_uint8(rgb) for rgb, _ in render_clip(model, conditions, cam2world)), fps, samples)
                videos[f"view_{name}_{sampled}"] = f"view_{name}_{sampled}.mp4"
        sheet = np.concatenate([view_rows(model, test, position) for position in (10, len(test) // 2)], axis=0)
        cv2.imwrite(str(run_dir / "views.png"), sheet[..., ::-1])
        videos["view_sheet"] = "views.png"
    for name, path in audio_files(args.audio_dir).items():
        speech = load_audio(path)
        count = output_frame_count(speech.shape[0] / 16000, fps)
        driven, _ = driving_conditions(audio_windows(run_config, speech, count, fps), driving,
                                       neutral=args.cross_tokens == "neutral")
        cameras, warps = camera_path("dataset", count, driving), plate_warp_path("dataset", count, driving)
        # still_NAME.mp4 holds the first replayed camera: if the mouth follows the replayed *cameras*' training
        # mouths (docs/lip-motion.md), it moves with the driving audio only here
        paths = {"cross": (cameras, warps, contextlib.nullcontext)}
        still = (cameras[:1].expand(count, 4, 4), None if warps is None else warps[:1].expand(count, 2, 3))
        if args.still_camera:
            paths["still"] = (*still, contextlib.nullcontext)
        if snapping and args.plain:
            paths["plain"] = (*still, lambda: unsnapped(model))
        for factor in args.mouth_scales if model.lips is not None else ():
            paths[f"crossx{factor:g}"] = (cameras, warps, lambda factor=factor: lip_config(model, mouth_scale=factor))
        for prefix, (cam2world, plate_warp, setting) in paths.items():
            with setting():
                frames = (to_uint8(rgb) for rgb, _ in render_clip(model, driven, cam2world, plate_warp=plate_warp))
                write_video(run_dir / f"{prefix}_{name}.mp4", frames, fps, speech)
            videos[f"{prefix}_{name}"] = f"{prefix}_{name}.mp4"
    report["wall_seconds"] = time.perf_counter() - started
    (run_dir / "diagnostics.json").write_text(json.dumps(report, indent=1))
    # one tar per group: the device hands back files of at most ~16 MB
    groups = {"": ["log.jsonl", "diagnostics.json"]}
    for key, name in videos.items():
        groups.setdefault("" if key.startswith("test") else "_" + key.split("_")[0], []).append(name)
    for suffix, names in groups.items():
        with tarfile.open(out / f"{run_dir.name}{suffix}.tar", "w") as tar:
            for name in names:
                tar.add(run_dir / name, arcname=f"{run_dir.name}/{name}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
