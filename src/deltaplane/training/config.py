"""Training configuration (optimisation, schedule, logging); the model's own config lives beside the model."""

from __future__ import annotations

from dataclasses import dataclass, field

from deltaplane.audio.augment import SpeakerAugmentConfig
from deltaplane.training.adversarial import AdversarialConfig
from deltaplane.training.guard import CollapseGuardConfig
from deltaplane.training.registration import RegistrationConfig
from deltaplane.training.windows import WindowConfig


@dataclass(frozen=True)
class TrainConfig:
    """How long and how to optimise."""

    steps: int = 80_000
    """Optimisation steps (Talk3D: 80 k)."""
    batch_size: int = 4
    """Frames per step (Talk3D: 2 items × 2 frames = 4)."""
    lr_identity: float = 1e-2
    """Adam learning rate of the identity planes (learned from the video; plane texels need a large rate)."""
    lr_renderer: float = 1e-3
    """Adam learning rate of the OSG decoder and the super-resolution net."""
    lr_predictor: float = 5e-4
    """Adam learning rate of the deltaplane predictor and the condition encoders (Talk3D: 5e-4)."""
    lr_audio: float = 5e-4
    """Adam learning rate of the audio encoders and their lip-vector heads in lip mode (their own regression target;
    no warm-up)."""
    lip_batch: int = 32
    """Lip mode: frames per step of each audio → lip vector regression, drawn apart from the rendered batch (the
    regressions render nothing, so a wide batch costs little; 0: the rendered batch's own frames). The regression
    alone on the CPU, 4 seeds: 32 frames instead of 4 raised the test-split lip correlation from 0.51 to 0.63 on
    macron_fr_50s and lowered it from 0.79 to 0.75 on the 18-s obama_20s, which over-fits; with four regressions
    (`fields.lips.LipConfig.regressions`) 0.69 and 0.80 (docs/lip-motion.md "Run 13")."""
    lip_prefit_steps: int = 0
    """Lip mode: steps that fit the audio → lip vector regressions alone, with an Adam of their own at
    `lip_prefit_lr`, before the renderer's first step (a new run only; they count towards `max_minutes`). The
    renderer is taught with tracked mouths, so the regressions matter at inference alone, and in a run of minutes
    their share of the steps leaves them short of fitted (docs/lip-motion.md "The regressions fitted first")."""
    lip_prefit_lr: float = 2e-3
    """Adam learning rate of `lip_prefit_steps`."""
    lip_prefit_patience: int = 0
    """Checks of the held-out calibration blocks' error (one every `training.lip_prefit.CHECK_EVERY` prefit steps)
    without a new best after which the prefit stops and keeps its best weights, so that a short clip, whose
    regressions over-fit, stops early (0: all `lip_prefit_steps`)."""
    lip_prefit_min_gain: float = 0.0
    """With `lip_prefit_patience`: the share by which the best check must lower the untrained regressions' error on
    the calibration blocks, or the prefit is undone (its weights go back to step 0's). The prefit helps a clip
    whose held-out mouths it learns to predict and costs one where it barely does: on an H100 obama_20s's error
    fell 7 % and its rendered mouth then swung less (cross-driven spread 0.62–0.66 against 0.71–0.72), macron_fr_50s's
    fell 28 % and its mouth followed the audio better (LMD 1.89 against 1.97); on the CPU 13–15 % (seeds 0–2) and
    26–28 % (seeds 1–2; docs/lip-motion.md "Run 51"). A clip without calibration blocks (under about 10 s of training
    frames at `LipConfig`'s defaults) cannot show the gain: there the prefit does not run. 0: keep the best however
    small its gain."""
    speaker_augment: SpeakerAugmentConfig = field(default_factory=SpeakerAugmentConfig)
    """Perturbed copies of the training audio (other vocal-tract lengths, noise) that training steps draw from,
    so that the audio encoder learns what the mouth does rather than what this voice sounds like."""
    token_dropout: float = 0.0
    """Probability that a training frame's eye, head-angle and landmark tokens are replaced by their neutral values
    (`structs.NeutralTokens`). Those tokens identify each training frame, so without dropout the deltaplane can
    store every frame's mouth under its pose and leave the audio unused (docs/lip-motion.md); dropped frames must
    be explained from the audio, as new audio is at inference."""
    lip_sampling: float = 0.0
    """Lip mode: share of training frames whose renderer is driven by the audio's lip vector as inference gives it
    (calibrated and snapped, no teacher noise) instead of the tracked one (scheduled sampling; no gradient flows back
    into the regression through it; `TriplaneTalker.tokens`). Taught only with
    tracked mouths, the renderer draws the audio's vectors, which are smoother and off the tracked manifold, with
    less motion than it draws the tracked ones (docs/lip-motion.md)."""
    fixed_samples_from: float = 1.0
    """Share of the training after which the rays are sampled at fixed depths (bin midpoints and fixed importance
    quantiles, as a model in eval mode renders: `VolumeRenderConfig.jitter_at_inference`) instead of at random; the
    share is of `steps` or of `max_minutes`, whichever runs out first. Trained only with random samples, the field and
    the super-resolution meet the fixed ones first at inference (docs/novel-views.md "Speckle on the torso"). 1:
    random throughout (EG3D)."""
    lr_decay: float = 0.1
    """Learning rates decay exponentially to this fraction at the last step."""
    warmup_delta_steps: int = 0
    """Steps during which only the identity, decoder and SR train (the deltaplane predictor joins after, with Adam's
    moments started then: the warm-up's gradients never reach it)."""
    log_every: int = 20
    eval_every: int = 500
    """Held-out (test split) PSNR/SSIM every this many steps (0 = only at the end)."""
    eval_frames: int = 16
    """Test frames evaluated each time (evenly spaced over the test split)."""
    checkpoint_every: int = 1000
    sample_every: int = 1000
    """Write a GT | render | depth sample image every this many steps."""
    sync_start_fraction: float = 0.75
    """With a sync expert: the sync loss is on from this share of the run on (of `steps`, or of `max_minutes` when that
    runs out first; Talk3D: the last ~15 %)."""
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    """The patch discriminator, its crops, optimiser and start step, used while `LossWeights.adversarial` > 0 (here
    and not in the model config: it shapes training only, never the saved model or rendering)."""
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    """Per-frame sub-pixel shifts of the renders, learned with them, that take up the frames' alignment jitter
    (`training.registration`; off while `max_shift` is 0)."""
    window: WindowConfig | None = None
    """Render each training frame through a window of its image, mostly over the face, at the same ray density
    (`training.windows`; None: whole frames). Any background (the plate is seen through the window too); not
    with a sync expert, whose mouth crops are the whole frame's."""
    collapse_guard: CollapseGuardConfig = field(default_factory=CollapseGuardConfig)
    """Roll back to an in-memory snapshot at a lower learning rate when the training PSNR collapses or the loss is
    not finite (`training.guard`)."""
    max_minutes: float | None = None
    """Stop (with a checkpoint and a final evaluation) after this much training time."""
    compile: bool = False
    """Compile each step's forward (the model, the registration shifts and the loss terms) and the patch
    discriminator with torch.compile (inductor). The eager step is bound by the host issuing its ~5,000 operations
    (docs/performance.md); compiled, the elementwise ones fuse. The first step pays the compilation (minutes; inside
    `max_minutes`), and again a step where the step's form changes (fixed ray samples, registration shifts
    starting). Random draws stay torch's own (inductor's `fallback_random`), so a
    compiled run draws the eager run's samples (tests/training/test_trainer.py)."""
    precision: str | None = None
    """'32-true', 'bf16-mixed' or '16-mixed'; None picks bf16 on CUDA, fp32 on CPU."""
    seed: int = 0
