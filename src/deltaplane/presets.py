"""Named presets: the one switch for model size and training length."""

from __future__ import annotations

import dataclasses

from deltaplane.audio.augment import SpeakerAugmentConfig
from deltaplane.audio.encoder import AudioEncoderConfig
from deltaplane.errors import InputError
from deltaplane.fields.deltaplane import DeltaplaneConfig
from deltaplane.fields.lips import LipConfig
from deltaplane.fields.superres import TINY_SUPERRES, SuperResolutionConfig
from deltaplane.fields.triplane import OSGDecoderConfig
from deltaplane.models.triplane_talker import LossWeights, TriplaneTalkerConfig
from deltaplane.render.volume import VolumeRenderConfig
from deltaplane.training.adversarial import AdversarialConfig
from deltaplane.training.config import TrainConfig
from deltaplane.training.windows import WindowConfig

TINY = (
    TriplaneTalkerConfig(plane_resolution=64, render_resolution=32,
                         volume=VolumeRenderConfig(num_coarse=16, num_importance=16),
                         superres=SuperResolutionConfig(input_resolution=32,
                                                        block0_channels=TINY_SUPERRES.block0_channels,
                                                        block1_channels=TINY_SUPERRES.block1_channels),
                         deltaplane=dataclasses.replace(DeltaplaneConfig.tiny(), block_norm="group"),
                         decoder=OSGDecoderConfig()),
    TrainConfig(steps=300, batch_size=2, eval_every=100, eval_frames=4, checkpoint_every=100, sample_every=300,
                log_every=10, warmup_delta_steps=50),
)
"""CPU-sized: 64² planes, 32² rendering with 16 + 16 samples, 128² output; a few minutes on 2 cores."""

FAST = (
    TriplaneTalkerConfig(render_resolution=256, superres=SuperResolutionConfig(input_resolution=256, upsamplings=1),
                         volume=VolumeRenderConfig(num_coarse=24, num_importance=24),
                         deltaplane=DeltaplaneConfig(block_norm="group"), audio_token="lips",
                         audio=AudioEncoderConfig(normalize=True), mouth_planes=8, mouth_planes_on=(0,),
                         mouth_confined=True,
                         lips=LipConfig(snap=1.0, regressions=4, teacher_snap=1.0, per_utterance=True),
                         loss=LossWeights(adversarial=0.1, feature_match=2.0, solid=5.0, delta_tv=0.05,
                                           novel_color=4.0)),
    TrainConfig(steps=6000, batch_size=4, lr_identity=5e-3, eval_every=500, eval_frames=16,
                checkpoint_every=1000, sample_every=1000, warmup_delta_steps=500,
                speaker_augment=SpeakerAugmentConfig(copies=6, stratified=True),
                lip_prefit_steps=3000, lip_prefit_patience=3, lip_prefit_min_gain=0.2,
                adversarial=AdversarialConfig(start_share=0.25), window=WindowConfig(320)),
)
"""Talk3D's architecture at half the ray samples, trained in minutes on one GPU. What each setting is for, and the
measurement that chose it (BENCHMARKS.md runs; docs/lip-motion.md, docs/novel-views.md, docs/sharpness.md):

- Per-plane GroupNorm in the deltaplane blocks: 4-frame batches make BatchNorm statistics noisy and open a
  train/eval gap.
- The audio token carries a lip vector regressed from per-utterance-normalised log-mels of the clip and six
  speaker-warped copies, with 8 audio-mixed mouth planes, and the adversarial patch term at 0.1, which also lets
  the renderer draw the whole opening: what made the lips follow the audio (run 8). Talk3D's own audio token
  (`full`) replays the training mouths from the camera and barely moves the lips for new audio.
- The lip vectors snap among the training frames' mouths (bandwidth 1 spacing), and the solid-body term (weight 5)
  fills the head behind its surface (run 11).
- The volume is rendered at 256², and one ×2 super-resolution block makes the 512² output: on obama_20s LMD 2.67 →
  1.91 and no seam on the mouth, at 0.6× the training steps per minute and 255 instead of 396 frames/s on the fast
  path (run 12).
- The lip vector is the mean of four audio regressions, each drawing 32 frames a step (`LipConfig.regressions`,
  `TrainConfig.lip_batch`): test-split lip correlation 0.51 → 0.69 on macron_fr_50s, 0.79 → 0.80 on obama_20s
  (CPU, docs/lip-motion.md run 13).
- The mouth planes sit on the xy plane alone, confined to the mouth box in depth, and the deltaplane's total
  variation (0.05) keeps their texels smooth: no line across the face, no prism down the chin, no fleck grid over
  the teeth (runs 15–17; macron_fr_50s LMD 2.03 → 1.95).
- Six speaker-augmented copies, stratified over the warp and noise ranges (`SpeakerAugmentConfig.stratified`): with
  two, their random draw moved the regression's landmark distance by 20 % (CPU); six gave macron_fr_50s LMD 2.04 →
  1.93 and 6 instead of 3 of 9 cross-driven files in the spread band (run 19).
- The renderer is taught with snapped lip vectors, each training frame's snapped among the other frames
  (`LipConfig.teacher_snap`), as it is driven at inference: on obama_20s the mouth no longer holds half open through
  the speaker's pauses (rendered pause opening 1.68 → 1.17 of the truth's), LMD 2.60 → 2.37 and all 9 cross-driven
  files in the band; on macron_fr_50s the spread rose to 0.79–0.87 and 7–8 of 9 files are in the band, at 0.7 dB of
  face PSNR (run 21).
- Each driving clip gets its own lip gain (`LipConfig.per_utterance`: its raw lip vectors move as much as the
  held-out blocks'): obama_20s test spread 1.39 → 0.92 and LMD 2.37 → 2.18, macron_fr_50s LMD 1.98–2.07 → 1.88 and
  all 9 cross-driven files in the band (run 22).
- The pseudo multi-view colour term (weight 4) shapes the head at angles the video never shows: at equal time,
  identity distance at yaw ±30° / pitch ±20° fell on both clips (obama_20s pitch −20° 0.449 → 0.419, macron_fr_50s
  yaw +30° 0.627 → 0.479) with face PSNR no lower (27.34 → 27.52, 24.95 → 25.00) and obama's LMD 2.63 → 1.94, for
  14 % fewer steps per minute (run 31).
- Before the renderer's first step the lip regressions are fitted alone, stopping after three checks without a new
  best, and undone unless the best lowered the held-out calibration blocks' error by a fifth
  (`TrainConfig.lip_prefit_min_gain`): kept on macron_fr_50s (28–31 % lower; LMD 1.97 → 1.89 in run 51), undone on
  obama_20s (7 %), where a kept prefit narrowed the mouth (runs 51–52).
- The adversarial term starts at step 1,000 or a quarter of the run, whichever comes first
  (`AdversarialConfig.start_share`), so that a run of minutes gets it too: LMD lower in all three calls of run 52
  (obama_20s 1.98 → 1.83, macron_fr_50s 1.87 → 1.83 and, 5 minutes, 2.03 → 1.91).
- From the same step the renderer's crops are also to excite the patch discriminator's hidden layers as the true
  crops at the same places do (`LossWeights.feature_match` 2, pix2pixHD's feature matching), which asks for the
  truth's detail where the hinge term asks for any plausible one: on obama_20s the face, eyes and mouth came
  0.7–1.1, 0.6–0.7 and 0.9–1.3 dB nearer the truth and both detail gains rose from −0.93 / 0.39 to −0.04–−0.07 /
  1.44–1.57 (two seeds), at the same steps per minute; on macron_fr_50s, whose detail gains stayed below zero, it
  changed little (mouth +0.6 dB; run 53).
- Each training frame is rendered through a 320² window of its 512² image, three in four of them over the face and
  the rest tiling the frame (`TrainConfig.window`): 39 % of the rays and super-resolved pixels a step, so 42–49 %
  more steps in the same minutes, and in five pairs on two clips the face 0.4–1.0 dB and the eyes 0.5–0.9 dB nearer
  the truth, LMD lower in all five (obama_20s 2.37 → 2.29, 2.30 → 2.23, 2.32 → 1.99 with the fitted ranges;
  macron_fr_50s 1.81 → 1.77, 1.89 → 1.78), sharpness up in four, the whole frame no lower once the windows tiled it;
  obama_20s's lip sync falls (0.66 → 0.57, 0.70 → 0.65, 0.79 → 0.69; the truth's own is 0.67) (runs 54 and 56). A
  sync expert's mouth crops are whole frames, so training with one drops the windows.
- The deltaplane predictor joins after 500 steps. Runs shorter than about 1,200 steps leave it dead (run 56); a
  100-step warm-up wakes it more and raises the whole frame, but not the mouth or the eyes (run 57)."""

FULL = (TriplaneTalkerConfig(), TrainConfig(warmup_delta_steps=2000))
"""Talk3D's sizes: 48 + 48 samples per ray, 80 k steps."""

PRESETS: dict[str, tuple[str, tuple[TriplaneTalkerConfig, TrainConfig]]] = {
    "tiny": ("CPU tests and the offline demo", TINY),
    "fast": ("full architecture, 256² rendering, 24+24 samples, lip vector + mouth planes, minutes on a GPU", FAST),
    "full": ("Talk3D sizes, 48+48 samples, 80k steps", FULL),
}


def get_preset(name: str) -> tuple[TriplaneTalkerConfig, TrainConfig]:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name][1]
