"""The lip vector: the audio token's content when the mouth is driven through an explicit mouth shape.

Talk3D feeds the audio code straight into the cross-attention and leaves the renderer to find out, from the
photometric loss alone, which part of the code opens the mouth; trained for minutes, it learns an average, half-closed
mouth (docs/lip-motion.md). Here the audio token carries a *lip vector* instead (as the Gaussian-prior seed's lip
vector): the whitened principal components of the tracked mouth shape (`geometry.lips.mouth_shape`).

* The renderer learns lip vector → mouth from the tracked mouths of the training frames (teacher forcing), a direct,
  per-frame signal.
* The audio encoder learns audio → lip vector by regression on the same frames, a small, well-posed problem.
* At inference the audio encoder's lip vector drives the renderer.
* A regression fitted on seconds of audio over-fits: on the frames it was fitted on it looks better than on new
  speech. Its gain is therefore calibrated on held-out blocks of training frames that the regression never sees
  (`LipVector.held_out`, `LipVector.calibrate`). With `LipConfig.per_utterance`, a whole driving clip is then
  scaled to move as much as those blocks (`LipVector.utterance_gain`): how far the regression swings depends on the
  voice and the passage, how far this person's mouth moves does not.

The eye, head-angle and landmark tokens keep driving the upper face and the pose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from deltaplane.geometry.lips import MOUTH_SHAPE_DIM
from deltaplane.geometry.precision import full_precision

MAX_GAIN = 3.0
"""Largest calibration gain of the lip vector (a tiny but correlated prediction is not blown up into noise)."""
CALIBRATION_ROUNDS = 3
"""Refinements of the gain on the snapped vectors (`LipConfig.snap`): the spread ratio settles within 1 % by then
(tests/test_lips.py)."""


@dataclass(frozen=True)
class LipConfig:
    """Size of the lip vector and how the renderer is taught with it."""

    dim: int = 8
    """Principal components of the mouth shape kept (8 hold > 95 % of its variance on the reference clips)."""
    teacher_noise: float = 0.1
    """Std of the Gaussian noise added to the tracked lip vector during training (whitened units), so that the
    renderer also sees lip vectors between and around the tracked ones, as the audio regression gives."""
    hidden: int = 64
    """Width of the MLP that lifts the lip vector into the audio token."""
    calibration_block: int = 25
    """Frames per held-out calibration block (1 s at 25 fps: longer than the audio window's ±8 frames, so that a
    held-out frame's audio is mostly unseen)."""
    calibration_every: int = 10
    """One block in every `calibration_every` is held out of the audio → lip regression (0: none, calibrate on the
    fitted frames)."""
    snap: float | None = None
    """If set, a calibrated lip vector is replaced by the Gaussian-kernel mean of the training frames' lip vectors
    (`snap_to_frames`), with a bandwidth of `snap` × their typical spacing (`frame_spacing`): the audio then asks
    only for mouths near those the renderer was taught, not for combinations of components that no frame had (the
    renderer draws those as doubled lips and streaks, run 10). docs/lip-motion.md "Run 10"."""
    bank_size: int = 2048
    """Training frames kept for `snap` (evenly spaced over the split when it has more: 82 s at 25 fps)."""
    snap_keep: int = 0
    """Leading components (largest variance first; the first is the jaw's opening) that `snap` leaves as they are:
    the snap pulls the minor components, which draw the artefacts, among the training frames' mouths, and the
    kernel mean no longer shortens the opening (0: every component snapped)."""
    regressions: int = 1
    """Independent audio → lip vector regressions (an audio encoder and a head each, each from its own init and
    frames) whose raw lip vectors are averaged. Regressed from 18–50 s of speech, one regression's test-split lip
    correlation swings with its seed (0.41–0.81 on macron_fr_50s); the mean of four is steadier and better
    (docs/lip-motion.md "Run 13")."""
    teacher_snap: float = 0.0
    """Share of the training frames whose tracked lip vector is replaced by its snap among the other training
    frames (`snap`, `LipVector.snapped(leave_out=True)`; then its `teacher_noise`) before it drives the renderer. At
    inference every lip vector is snapped, and a kernel mean of neighbouring mouths is shorter than any tracked
    vector (its minor components average out: median norm 1.3–1.8 against 2.5–2.7 on the reference clips), so
    without it the renderer meets them only at inference (docs/lip-motion.md "Run 14"), and draws them half open
    where the speaker pauses (run 20). 0: taught with tracked vectors only."""
    per_utterance: bool = False
    """Drive a whole clip with the gain times the held-out blocks' raw spread over the clip's raw spread
    (`LipVector.utterance_gain`, `TriplaneTalker.clip_audio_codes`): every driving clip's raw lip vectors then move
    as much as the held-out blocks'. The regression's swing differs between passages of the same voice (on
    obama_20s it swings 1.55–1.93× as far on the test passage as on the held-out block, while the tracked mouth
    moves as much on both) and between voices; a person's mouth motion does not (docs/lip-motion.md "Run 22").
    Single frames (training, its periodic evaluation) keep the calibrated gain."""
    mouth_scale: float = 1.0
    """Factor on a whole driving clip's gain (`TriplaneTalker.clip_lip_vectors`): above 1 the mouth moves further
    and opens wider, still inside the training frames' range and, with `snap`, among their mouths; below 1 it moves
    less. A setting for rendering (`render --mouth-scale`); training never reads it."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.teacher_snap <= 1.0:
            raise ValueError(f"LipConfig.teacher_snap must be a share in [0, 1], got {self.teacher_snap}")
        if self.teacher_snap > 0 and self.snap is None:
            raise ValueError("LipConfig.teacher_snap needs LipConfig.snap (the snap it teaches the renderer)")
        if self.snap is not None and not self.snap > 0:
            raise ValueError(f"LipConfig.snap must be > 0 (a bandwidth factor) or None, got {self.snap}")
        if not 0 <= self.snap_keep <= self.dim:
            raise ValueError(f"LipConfig.snap_keep must lie in [0, dim = {self.dim}], got {self.snap_keep}")
        if self.bank_size < 2:
            raise ValueError(f"LipConfig.bank_size must be at least 2, got {self.bank_size}")
        if self.regressions < 1:
            raise ValueError(f"LipConfig.regressions must be at least 1, got {self.regressions}")
        if not 0 < self.mouth_scale < math.inf:
            raise ValueError(f"LipConfig.mouth_scale must be a positive factor, got {self.mouth_scale}")


NEIGHBOURS = 2
"""Frames on each side of a frame that are near-copies of it (consecutive frames): left out wherever a frame must be
compared with, or snapped among, the *other* frames (`frame_spacing`, `LipVector.taught`)."""


def frame_spacing(points: Float[Tensor, "frames dim"], skip: int = NEIGHBOURS) -> float:
    """Median distance from a frame to its nearest frame that is more than `skip` frames away (consecutive frames
    are near-copies; they would make every spacing tiny)."""
    distances = torch.cdist(points, points)
    index = torch.arange(len(points), device=points.device)
    distances[(index[:, None] - index[None]).abs() <= skip] = torch.inf
    return distances.amin(1).median().item()


def snap_weights(vectors: Float[Tensor, "batch dim"], frames: Float[Tensor, "bank dim"],
                 valid: Bool[Tensor, "*batch bank"], bandwidth: float | Tensor) -> Float[Tensor, "batch bank"]:
    """Nadaraya–Watson weights: a Gaussian kernel of each vector's distance to the valid `frames` (`valid` per bank
    frame, or per vector and bank frame; `bandwidth` the kernel's std), normalised over the frames."""
    squared = torch.cdist(vectors.float(), frames.float()).square()
    logits = (-squared / (2 * torch.as_tensor(bandwidth).square())).masked_fill(~valid, -torch.inf)
    return torch.softmax(logits, dim=-1)


def snap_to_frames(vectors: Float[Tensor, "batch dim"], frames: Float[Tensor, "bank dim"],
                   valid: Bool[Tensor, "*batch bank"], bandwidth: float | Tensor) -> Float[Tensor, "batch dim"]:
    """Each vector becomes the mean of the valid `frames` under its `snap_weights`. Near a frame it is that frame;
    between frames, their blend."""
    return snap_weights(vectors, frames, valid, bandwidth) @ frames.float()


def shape_spread(vectors: Float[Tensor, "frames dim"], weights: Float[Tensor, " dim"]) -> Tensor:
    """Std of a series of vectors about their mean, all components together, component k weighted by `weights[k]`
    (its variance in shape space): how much the mouth they stand for moves."""
    return ((vectors - vectors.mean(0)).square() * weights).sum(1).mean().sqrt()


def pooled_spread(predicted: Float[Tensor, "frames dim"], target: Float[Tensor, "frames dim"],
                  weights: Float[Tensor, " dim"]) -> tuple[float, float]:
    """Spread ratio (target over predicted: the std of all weighted components together) and pooled Pearson
    correlation of two series of vectors, component k weighted by `weights[k]` (its variance in shape space)."""
    centred_p, centred_t = predicted - predicted.mean(0), target - target.mean(0)
    variance_p, variance_t = (centred_p.square() * weights).sum(), (centred_t.square() * weights).sum()
    covariance = (centred_p * centred_t * weights).sum()
    ratio = (variance_t / variance_p.clamp_min(1e-12)).sqrt().item()
    return ratio, (covariance / (variance_p * variance_t).sqrt().clamp_min(1e-12)).item()


class LipVector(nn.Module):
    """Mouth-shape basis (buffers, fitted once on the training frames), audio code → lip vector head, lip vector →
    audio token MLP."""

    def __init__(self, config: LipConfig, code_dim: int, token_dim: int) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("mean", torch.zeros(MOUTH_SHAPE_DIM))
        self.register_buffer("components", torch.eye(config.dim, MOUTH_SHAPE_DIM))
        self.register_buffer("scale", torch.ones(config.dim))
        self.register_buffer("gain", torch.ones(config.dim))
        self.register_buffer("low", torch.full((config.dim,), -torch.inf))
        self.register_buffer("high", torch.full((config.dim,), torch.inf))
        if config.snap is not None:  # only then: older checkpoints keep their tensors
            self.register_buffer("bank", torch.zeros(config.bank_size, config.dim))
            self.register_buffer("bank_valid", torch.zeros(config.bank_size, dtype=torch.bool))
            self.register_buffer("bandwidth", torch.tensor(1.0))
        if config.per_utterance:
            self.register_buffer("held_out_spread", torch.tensor(0.0))  # 0: not calibrated, no per-clip gain
        self._has_bank = False
        """Whether `fit` or a loaded state dict stored any frame in the bank: kept on the host, so that `snapped`
        neither waits for the device nor breaks a compiled training step's graph (`TrainConfig.compile`)."""
        self.register_load_state_dict_post_hook(LipVector._read_bank)
        self.head = nn.Linear(code_dim, config.dim)
        # the other regressions' heads (none by default: older checkpoints keep their tensors)
        self.more_heads = nn.ModuleList(nn.Linear(code_dim, config.dim) for _ in range(config.regressions - 1))
        self.embed = nn.Sequential(nn.Linear(config.dim, config.hidden), nn.ReLU(), nn.Linear(config.hidden, token_dim))

    @torch.no_grad()
    def fit(self, shapes: Float[Tensor, "frames 40"]) -> None:
        """Principal components of the training frames' mouth shapes; each coefficient gets unit variance."""
        shapes = shapes.double()
        mean = shapes.mean(0)
        _, singular, vectors = torch.linalg.svd(shapes - mean, full_matrices=False)  # rows of vectors: components
        std = singular[:self.config.dim] / max(shapes.shape[0] - 1, 1) ** 0.5
        self.mean.copy_(mean)
        self.components.copy_(vectors[:self.config.dim])
        self.scale.copy_(std.clamp_min(1e-6))
        coefficients = self.coefficients(shapes)
        self.low.copy_(coefficients.amin(0))
        self.high.copy_(coefficients.amax(0))
        if self.config.snap is not None:
            count = min(len(coefficients), self.config.bank_size)
            kept = coefficients[torch.linspace(0, len(coefficients) - 1, count).round().long()].float()
            self.bank.zero_()
            self.bank[:count] = kept
            self.bank_valid.copy_(torch.arange(self.config.bank_size) < count)
            self._has_bank = count > 0
            # distances in mouth-shape space, where the renderer's mouths differ (not in whitened units)
            self.bandwidth.fill_(self.config.snap * frame_spacing(kept * self.scale.float()))

    @torch.no_grad()
    def calibrate(self, predicted: Float[Tensor, "frames dim"], target: Float[Tensor, "frames dim"]) -> None:
        """Undo the regression's shrinkage on frames it was not fitted on: a least-squares fit predicts the part of
        the mouth motion that the audio explains, so its spread is smaller than the tracked mouth's (a mouth that
        moves too little). One gain for the whole lip vector, measured in mouth-shape space (components weighted
        by their variance there, `pooled_spread`): a held-out set of a few dozen frames cannot rank eight
        components (per-component gains from 25 frames came out anywhere from 0 to 3 and switched the opening off
        on one run), but it measures how much the mouth moves. The gain is that spread ratio, at most MAX_GAIN; it
        is not damped by the held-out correlation, which 25 frames measure too poorly (on obama_20s it came out
        0.15–0.62 over five seeds of the same regression and, as a damping factor, shut the mouth on one of
        them). Only a prediction uncorrelated with the mouth (correlation ≤ 0) keeps the raw regression (gain 1).
        With `snap` the spread is that of the snapped vectors (the kernel mean moves vectors towards where the
        frames are dense, mostly inwards: the gains of the CPU ablation rose by 0.2–0.7): the gain is refined a
        few times on them. With `per_utterance` the raw held-out spread is kept for `utterance_gain`."""
        weights = self.scale.float().square()
        ratio, correlation = pooled_spread(predicted.float(), target.float(), weights)
        if self.config.per_utterance:
            self.held_out_spread.fill_(shape_spread(predicted.float(), weights) if correlation > 0 else 0.0)
        if correlation <= 0:
            self.gain.fill_(1.0)
            return
        self.gain.fill_(min(ratio, MAX_GAIN))
        for _ in range(CALIBRATION_ROUNDS if self.config.snap is not None else 0):
            ratio, _ = pooled_spread(self.calibrated(predicted.float()), target.float(), weights)
            self.gain.mul_(ratio).clamp_(max=MAX_GAIN)

    @property
    def heads(self) -> list[nn.Linear]:
        """One audio code → lip vector head per regression (`LipConfig.regressions`)."""
        return [self.head, *self.more_heads]

    def predict(self, audio_code: Float[Tensor, "batch code_dim"], calibrated: bool = True
                ) -> Float[Tensor, "batch dim"]:
        """Audio code → lip vector of one regression, the first head's (`calibrated`: times the gain of `calibrate`
        and kept inside the training frames' range, and among the training frames' mouths with `snap`, so an
        unfamiliar voice cannot ask for a mouth the renderer never saw; the regression loss uses the raw output).
        The model averages all its regressions' heads (`TriplaneTalker.predicted_lips`)."""
        lips = self.head(audio_code)
        return self.calibrated(lips) if calibrated else lips

    def calibrated(self, lips: Float[Tensor, "batch dim"], gain: Float[Tensor, " dim"] | None = None
                   ) -> Float[Tensor, "batch dim"]:
        """The regression's raw lip vectors with the gain (`gain`, e.g. a clip's `utterance_gain`, or the
        calibrated one), the training range and `snap` applied."""
        gain = self.gain if gain is None else gain
        return self.snapped(torch.minimum(torch.maximum(lips * gain, self.low), self.high))

    def utterance_gain(self, lips: Float[Tensor, "frames dim"]) -> Float[Tensor, " dim"]:
        """The gain for a whole driving clip's raw lip vectors (`LipConfig.per_utterance`): the calibrated gain
        times the held-out blocks' raw spread over the clip's (`shape_spread`), at most MAX_GAIN. The calibrated
        gain alone without `per_utterance`, before `calibrate`, for an uncorrelated regression, and for a clip
        shorter than a calibration block (too few frames to measure its spread)."""
        if not self.config.per_utterance or len(lips) < self.config.calibration_block:
            return self.gain
        reference = self.held_out_spread.float()
        if reference <= 0:
            return self.gain
        spread = shape_spread(lips.float(), self.scale.float().square())
        return (self.gain * reference / spread.clamp_min(1e-9)).clamp(max=MAX_GAIN)

    @staticmethod
    def _read_bank(module: LipVector, incompatible_keys: object) -> None:
        module._has_bank = module.config.snap is not None and bool(module.bank_valid.any())  # one wait per load

    def snapped(self, lips: Float[Tensor, "batch dim"], leave_out: bool = False) -> Float[Tensor, "batch dim"]:
        """Lip vectors pulled among the training frames' (`snap_to_frames`); unchanged without `snap`, and before
        `fit` has stored any frame (a model that has seen no video: the kernel mean of no frames is undefined).
        `leave_out`: for the training frames' own vectors, the bank frame nearest each and its `NEIGHBOURS` on
        each side are left out, so that a training frame is snapped among the *other* frames, as a new frame is at
        inference (with itself in the bank its snap stays near it: on obama_20s it moves a training frame 1.29,
        a test frame 1.67, a training frame left out 1.70; docs/lip-motion.md "Run 21")."""
        if self.config.snap is None or not self._has_bank:
            return lips
        scale = self.scale.float()
        valid = self.bank_valid
        if leave_out:
            distances = torch.cdist(lips.float() * scale, self.bank * scale).masked_fill(~valid, torch.inf)
            position = torch.arange(len(valid), device=lips.device)
            nearest = distances.argmin(1, keepdim=True)
            others = valid & ((position - nearest).abs() > NEIGHBOURS)
            valid = torch.where(others.any(1, keepdim=True), others, valid)  # a bank of a few frames keeps them all
        moved = snap_to_frames(lips * scale, self.bank * scale, valid, self.bandwidth) / scale
        keep = self.config.snap_keep
        return torch.cat((lips[:, :keep].to(moved.dtype), moved[:, keep:]), dim=1) if keep else moved

    def taught(self, lips: Float[Tensor, "batch dim"]) -> Float[Tensor, "batch dim"]:
        """The lip vectors the renderer is taught with in place of tracked ones (`lips`): plus `teacher_noise`, and
        for a `teacher_snap` share of the batch snapped among the other training frames (`snapped(leave_out=True)`,
        the noise added after), as every lip vector is at inference."""
        noisy = lips + self.config.teacher_noise * torch.randn_like(lips)
        if self.config.teacher_snap == 0:  # no draw: runs without it keep their random stream
            return noisy
        chosen = torch.rand(lips.shape[0], device=lips.device) < self.config.teacher_snap
        return torch.where(chosen[:, None], self.snapped(lips, leave_out=True) + (noisy - lips), noisy)

    def held_out(self, indices: Int[Tensor, " frames"]) -> Bool[Tensor, " frames"]:
        """Frames (dataset frame indices) kept out of the audio → lip regression for calibration: one block of
        `calibration_block` frames in every `calibration_every`, spread over the clip."""
        every = self.config.calibration_every
        if every == 0:
            return torch.zeros_like(indices, dtype=torch.bool)
        return torch.div(indices, self.config.calibration_block, rounding_mode="floor") % every == every - 1

    @full_precision  # the regressions' targets and the renderer's taught vectors: as evaluation computes them
    def coefficients(self, shapes: Float[Tensor, "batch 40"]) -> Float[Tensor, "batch dim"]:
        """Whitened lip vector of tracked mouth shapes."""
        return (shapes.float() - self.mean) @ self.components.T / self.scale

    @full_precision
    def shapes(self, coefficients: Float[Tensor, "batch dim"]) -> Float[Tensor, "batch 40"]:
        """The mouth shape a lip vector stands for (the basis' reconstruction)."""
        return (coefficients.float() * self.scale) @ self.components + self.mean

    def forward(self, coefficients: Float[Tensor, "batch dim"]) -> Float[Tensor, "batch token_dim"]:
        """Lip vector → audio token."""
        return self.embed(coefficients)
