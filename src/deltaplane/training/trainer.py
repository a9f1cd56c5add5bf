"""The training loop: load → step → evaluate → checkpoint, resumable exactly."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.profiler import record_function
from tqdm import tqdm

from deltaplane import checkpoint
from deltaplane.audio.features import normalize_utterance
from deltaplane.config_io import from_dict, to_dict
from deltaplane.data.background import background_plate
from deltaplane.data.dataset import ClipData, audio_context, lip_frames, load_clip, make_batch
from deltaplane.data.schema import AUDIO_WAV
from deltaplane.devices import host_to_device
from deltaplane.errors import InputError
from deltaplane.metrics.image import psnr
from deltaplane.models.triplane_talker import TriplaneTalker, TriplaneTalkerConfig
from deltaplane.preprocess.av_sync import describe_offset
from deltaplane.structs import FrameBatch, LipFrames, NeutralTokens, RenderOutput
from deltaplane.training.adversarial import PatchAdversary
from deltaplane.training.config import TrainConfig
from deltaplane.training.evaluation import evaluate_clip, sample_image
from deltaplane.training.guard import CollapseGuard
from deltaplane.training.lip_prefit import prefit_lips
from deltaplane.training.logging import RunLogger
from deltaplane.training.precision import autocast, default_precision, grad_scaler
from deltaplane.training.registration import FrameRegistration, shift_output
from deltaplane.training.windows import draw_windows, window_batch

METHOD = "triplane"
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    metrics: dict[str, float]


def _param_groups(model: TriplaneTalker, config: TrainConfig) -> list[dict]:
    renderer = [*model.field.parameters(), *model.superres.parameters()]
    predictor = [*model.predictor.parameters(), *model.condition_encoder.parameters()]
    planes = [model.identity_planes]
    if model.config.torso_follow is not None:
        planes.append(model.torso_planes)
    if model.config.mouth_planes:  # texels like the identity's; their audio mix like the predictor
        planes.extend(model.mouth_planes)
        predictor.extend(model.mouth_mix.parameters())
    groups = [{"params": planes, "lr": config.lr_identity, "name": "identity"},
              {"params": renderer, "lr": config.lr_renderer, "name": "renderer"}]
    if model.lips is None:
        return [*groups, {"params": [*predictor, *model.audio_encoder.parameters()], "lr": config.lr_predictor,
                          "name": "predictor"}]
    # Lip mode: the audio → lip vector regression has its own target and needs no warm-up.
    audio = [parameter for encoder, head in model.lip_regressions()
             for parameter in (*encoder.parameters(), *head.parameters())]
    return [*groups, {"params": [*predictor, *model.lips.embed.parameters()], "lr": config.lr_predictor,
                      "name": "predictor"},
            {"params": audio, "lr": config.lr_audio, "name": "audio"}]


def _set_learning_rates(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int, scale: float = 1.0) -> None:
    factor = scale * config.lr_decay ** (step / max(config.steps, 1))
    base = {"identity": config.lr_identity, "renderer": config.lr_renderer, "predictor": config.lr_predictor,
            "audio": config.lr_audio}
    for group in optimizer.param_groups:
        group["lr"] = base[group["name"]] * factor if _active(group, config, step) else 0.0


def _progress(config: TrainConfig, step: int, seconds: float) -> float:
    """The share of the training done: of `steps`, or of `max_minutes` when that runs out first."""
    share = step / max(config.steps, 1)
    return share if config.max_minutes is None else max(share, seconds / (60 * config.max_minutes))


def _active(group: dict, config: TrainConfig, step: int) -> bool:
    """Whether a parameter group trains at `step`: all do, except the predictor during the deltaplane warm-up."""
    return group["name"] != "predictor" or step >= config.warmup_delta_steps


def _drop_inactive_gradients(optimizer: torch.optim.Optimizer, config: TrainConfig, step: int) -> None:
    """Hide the warm-up's gradients from Adam: behind the deltaplane's zero-initialised output layer they are zero,
    yet each would advance the predictor's step count, spending Adam's bias correction while its second moment
    stays at zero; after a 500-step warm-up the first hundred steps would then move every weight 2–6× farther than
    its learning rate (tests/test_training.py). Without a gradient Adam skips the parameter, and starts it afresh
    when the warm-up ends."""
    for group in optimizer.param_groups:
        if not _active(group, config, step):
            for param in group["params"]:
                param.grad = None


def _compiled(function: Callable) -> Callable:
    """`function` compiled by inductor, with torch's random draws instead of inductor's own (its
    `fallback_random`), so that the compiled training draws the eager one's ray samples."""
    compiled = torch.compile(function)

    def call(*args: object) -> object:
        with torch._inductor.config.patch(fallback_random=True):  # read when a call compiles
            return compiled(*args)
    return call


def _save_driving_tracks(run_dir: Path, clip: ClipData) -> None:
    """The training frames' tokens and cameras, replayed by renders, and their plate warps: a plate-mode render
    from these cameras places the plate as training did (`inference.plate_warp_path`; ignored in field mode)."""
    from deltaplane.atomic import save_npz

    save_npz(run_dir / checkpoint.DRIVING_TRACKS, indices=clip.indices.numpy(), eye=clip.eye.numpy(),
             angles=clip.angles.numpy(), landmarks=clip.landmarks.numpy(), cam2world=clip.cam2world.numpy(),
             plate_warps=clip.plate_warps.numpy())


def _saved_model_config(run_dir: Path, resume: bool) -> TriplaneTalkerConfig | None:
    """A resumed run's own model config (its config.json); None for a new run."""
    if resume and (run_dir / checkpoint.CONFIG).is_file():
        return from_dict(TriplaneTalkerConfig, checkpoint.read_run_config(run_dir)["model"])
    return None


def _prepare_run(run_dir: Path, dataset_dir: Path, model_config: TriplaneTalkerConfig, train_config: TrainConfig,
                 preset: str, resume: bool, feature_dim: int) -> TriplaneTalkerConfig:
    """Write config.json for a new run (a resumed run trains with its own, `_saved_model_config`)."""
    model_config = replace(model_config, audio=replace(model_config.audio, feature_dim=feature_dim))
    config = {"method": METHOD, "preset": preset, "dataset": str(dataset_dir.resolve()),
              "model": to_dict(model_config), "train": to_dict(train_config)}
    if not resume and checkpoint.latest_checkpoint(run_dir) is not None:
        raise InputError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another -o")
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.write_run_config(run_dir, config)
    return model_config


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    state = {"rng.sampler": generator.get_state(), "rng.torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["rng.cuda"] = torch.cuda.get_rng_state(device)
    return state


ROLLBACKS = "guard.rollbacks"
"""Training-state name of the collapse guard's rollback count (its learning-rate factor survives a resume)."""


Companion = PatchAdversary | FrameRegistration
"""Training machinery beside the model with its own state (`state_tensors` / `load_state_tensors`): checkpoints,
resumes and rollbacks carry it; rendering never reads it."""


def _optimiser_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str],
                       companions: list[Companion]) -> dict[str, torch.Tensor]:
    """The Adam moments and the companions' states, by checkpoint name."""
    tensors = checkpoint.optimizer_to_tensors(optimizer, names)
    for companion in companions:
        tensors.update(companion.state_tensors())
    return tensors


def _load_optimisers(optimizer: torch.optim.Optimizer, names: dict[int, str], companions: list[Companion],
                     tensors: dict[str, torch.Tensor]) -> None:
    checkpoint.optimizer_from_tensors(optimizer, names, tensors)
    for companion in companions:
        companion.load_state_tensors(tensors)


def _snapshot_tensors(model: TriplaneTalker, optimizer: torch.optim.Optimizer, names: dict[int, str],
                      companions: list[Companion]) -> dict[str, torch.Tensor]:
    """What a rollback restores: the model's weights (`model.` names), the Adam moments and the companions."""
    return {**{f"model.{name}": value for name, value in model.state_dict().items()},
            **_optimiser_tensors(optimizer, names, companions)}


def _load_snapshot(model: TriplaneTalker, optimizer: torch.optim.Optimizer, names: dict[int, str],
                   companions: list[Companion], tensors: dict[str, torch.Tensor]) -> None:
    model.load_state_dict({name[len("model."):]: value for name, value in tensors.items()
                           if name.startswith("model.")})
    optimizer.state.clear()  # parameters without saved moments start afresh, as they had at the snapshot
    _load_optimisers(optimizer, names, companions, tensors)


def _restore(run_dir: Path, model: TriplaneTalker, optimizer: torch.optim.Optimizer, generator: torch.Generator,
             names: dict[int, str], device: torch.device, companions: list[Companion],
             guard: CollapseGuard) -> tuple[int, float]:
    latest = checkpoint.latest_checkpoint(run_dir)
    if latest is None:
        return 0, 0.0
    loaded = checkpoint.load_checkpoint(latest)
    model.load_state_dict(loaded.model_state)
    _load_optimisers(optimizer, names, companions, loaded.training_state)
    if ROLLBACKS in loaded.training_state:
        guard.rollbacks = int(loaded.training_state[ROLLBACKS])
    generator.set_state(loaded.training_state["rng.sampler"])
    torch.set_rng_state(loaded.training_state["rng.torch"])
    if device.type == "cuda" and "rng.cuda" in loaded.training_state:
        torch.cuda.set_rng_state(loaded.training_state["rng.cuda"], device)
    return loaded.step, float(loaded.meta.get("train_seconds", 0.0))


def train(dataset_dir: Path, run_dir: Path, model_config: TriplaneTalkerConfig, train_config: TrainConfig,
          preset: str, device: torch.device, resume: bool = False, progress: bool = True,
          tensorboard: bool = False, perceptual: torch.nn.Module | None = None,
          sync_expert: torch.nn.Module | None = None, until_step: int | None = None) -> TrainResult:
    """Train (or resume) a triplane talker on `dataset_dir`, writing everything into `run_dir`.

    `until_step` ends this call early at that step (checkpoint written, schedule unchanged), like an interruption
    that `resume=True` continues; `train_config.max_minutes` does the same by wall time."""
    dataset_dir, run_dir = Path(dataset_dir), Path(run_dir)
    saved = _saved_model_config(run_dir, resume)
    if train_config.window is not None and sync_expert is not None:
        raise ValueError("TrainConfig.window trains without a sync expert: its mouth crops are whole frames")
    clips = saved or model_config  # a resumed run's clips hold what it trains with
    normalize, head, brows = clips.audio.normalize, clips.head_proxy, clips.conditions.brows
    manifest, train_clip = load_clip(dataset_dir, "train", size=clips.output_resolution, normalize_audio=normalize,
                                     head_proxy=head, brows=brows)
    test_clip = load_clip(dataset_dir, "test", size=clips.output_resolution, normalize_audio=normalize,
                          head_proxy=head, brows=brows)[1] if manifest.splits["test"] else None
    if "sync" not in manifest.stages:  # a lag between sound and lips is learnt and replayed with every voice
        LOG.warning("%s: audio–video offset %s", dataset_dir, describe_offset(manifest))
    model_config = saved or _prepare_run(run_dir, dataset_dir, model_config, train_config, preset, resume,
                                         manifest.audio.dim)
    _save_driving_tracks(run_dir, train_clip)
    torch.manual_seed(train_config.seed)
    model = TriplaneTalker(model_config).to(device)
    if model_config.uses_plate:
        model.load_background_plate(*background_plate(dataset_dir, train_clip))
    if model.lips is not None:  # the basis is a function of the training frames; a resumed run reloads the same
        model.lips.fit(train_clip.mouth_shapes.to(device))
    if model_config.conditions.fitted_ranges:  # as the lip basis: the same training frames give the same ranges
        model.condition_encoder.fit(train_clip.eye.to(device), train_clip.angles.to(device),
                                    train_clip.landmarks.to(device))
    names = {id(p): n for n, p in model.named_parameters()}
    # fused: one kernel group per step instead of a host loop (docs/performance.md)
    optimizer = torch.optim.Adam([{k: v for k, v in g.items()} for g in _param_groups(model, train_config)],
                                 fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(train_config.seed)
    adversary = (PatchAdversary(train_config.adversarial, device, train_config.seed, train_config.compile)
                 if model_config.loss.adversarial > 0 or model_config.loss.feature_match > 0 else None)
    registration = (FrameRegistration(train_config.registration, len(train_clip), device)
                    if train_config.registration.max_shift > 0 else None)
    companions = [c for c in (adversary, registration) if c is not None]
    guard = CollapseGuard(train_config.collapse_guard)
    start_step, train_seconds = (_restore(run_dir, model, optimizer, generator, names, device, companions, guard)
                                 if resume else (0, 0.0))
    precision = train_config.precision or default_precision(device)
    scaler = grad_scaler(precision, device)  # type: ignore[arg-type]
    logger = RunLogger(run_dir, tensorboard=tensorboard, start_step=start_step)
    train_clip, test_clip = train_clip.to(device), test_clip.to(device) if test_clip is not None else None
    audio_versions = _audio_versions(dataset_dir, manifest, train_clip, train_config, normalize)
    neutral = NeutralTokens.of(train_clip.eye, train_clip.landmarks)
    sync = None
    if sync_expert is not None:
        from deltaplane.training.sync import SyncSupervisor

        sync = SyncSupervisor(sync_expert.to(device), train_clip, dataset_dir / "audio.wav", manifest.fps)

    def forward(batch: FrameBatch, audio_driven: Tensor | None, regression: list[LipFrames] | None,
                shifts: Tensor | None) -> tuple[RenderOutput, Tensor, dict[str, Tensor]]:
        """The step's render (moved by the frames' registration `shifts`) and loss terms (compiled with
        `TrainConfig.compile`)."""
        output, delta = model(batch.cameras, batch.conditions, mouth_shape=batch.mouth_shape,
                              lower_face=batch.lower_face, plate_warp=batch.plate_warp, audio_driven=audio_driven,
                              rays=batch.images_raw.shape[-1])
        if shifts is not None:
            output = shift_output(output, shifts)
        return output, delta, model.loss_terms(output, delta, batch, perceptual, lip_frames=regression)

    if train_config.compile:
        forward = _compiled(forward)
    metrics: dict[str, float] = {}
    step = start_step
    detailed = False  # whether any step of this call gave the renderer the adversarial term (the hinge term, or
    # feature matching where it is the only one)
    started = time.perf_counter() - train_seconds
    if model.lips is not None and train_config.lip_prefit_steps > 0 and start_step == 0:
        prefit = prefit_lips(model, train_clip, train_config.lip_prefit_steps, train_config.lip_prefit_lr,
                             train_config.lip_batch or train_config.batch_size, train_config.seed + 1,
                             audio_versions, progress, train_config.lip_prefit_patience,
                             train_config.lip_prefit_min_gain)
        calibrate_lips(model, train_clip)
        losses = prefit.losses
        tail = losses[-100:]  # the last steps' mean: one batch's loss is noisy
        logger.scalars(0, {"lip_prefit/steps": len(losses), "lip_prefit/kept_step": prefit.kept_step,
                           **({"lip_prefit/loss_first": losses[0], "lip_prefit/loss_last": sum(tail) / len(tail)}
                              if losses else {}),
                           **({"lip_prefit/held_out_first": prefit.held_out[0][1],
                               "lip_prefit/held_out_best": prefit.best_held_out,
                               "lip_prefit/held_out_kept": dict(prefit.held_out)[prefit.kept_step]}
                              if prefit.held_out else {}),
                           "lip_prefit/seconds": time.perf_counter() - started})
        if progress:
            tqdm.write(prefit.describe())
    bar = tqdm(total=train_config.steps, initial=start_step, disable=not progress, desc="train", unit="step")
    try:
        while step < min(train_config.steps, until_step or train_config.steps):
            if train_config.max_minutes is not None and time.perf_counter() - started > 60 * train_config.max_minutes:
                break
            done = _progress(train_config, step, time.perf_counter() - started)  # the share of the run behind
            if model.config.volume.jitter and done >= train_config.fixed_samples_from:
                # the run config keeps the jitter: it is the training's
                model.config = replace(model.config, volume=replace(model.config.volume, jitter=False))
            if guard.due(step):
                guard.snapshot(step, _snapshot_tensors(model, optimizer, names, companions))
            _set_learning_rates(optimizer, train_config, step, guard.lr_scale)
            use_sync = sync is not None and done >= train_config.sync_start_fraction
            if use_sync:
                positions, starts = sync.sample(train_config.batch_size, generator)
            else:
                positions = host_to_device(torch.randint(len(train_clip), (train_config.batch_size,),
                                                         generator=generator), device)
            clip = train_clip
            if audio_versions is not None:  # the original audio or one of its speaker-augmented copies
                version = int(torch.randint(audio_versions.shape[0], (1,), generator=generator))
                clip = replace(train_clip, audio_features=audio_versions[version])
            batch = make_batch(clip, positions, model_config.render_resolution)
            if train_config.window is not None:
                window = draw_windows(clip.face_boxes[positions], train_config.window, batch.images.shape[-1],
                                      model_config.superres.scale, generator)
                batch = window_batch(batch, window, train_config.window.size)
            if train_config.token_dropout > 0:
                dropped = torch.rand(len(positions), generator=generator) < train_config.token_dropout
                batch = replace(batch, conditions=batch.conditions.neutralized(host_to_device(dropped, device), neutral))
            # Scheduled sampling (TrainConfig.lip_sampling); drawn even at 0, so that runs that differ only in it
            # share their random stream.
            audio_driven = None
            if model.lips is not None:
                sampled = torch.rand(len(positions), generator=generator) < train_config.lip_sampling
                if train_config.lip_sampling > 0:  # a mask every step, sampled or not: one compiled graph
                    audio_driven = host_to_device(sampled, device)
            regression = None
            if model.lips is not None and train_config.lip_batch > 0:  # the same audio version as the batch's
                regression = [lip_frames(clip, host_to_device(torch.randint(len(clip), (train_config.lip_batch,),
                                                                            generator=generator), device))
                              for _ in range(model.lips.config.regressions)]  # each regression its own frames
            corners = adversary.corners(batch) if adversary is not None else None
            with autocast(precision, device), record_function("train/forward"):  # type: ignore[arg-type]
                shifts = None
                if registration is not None and registration.active(step):
                    shifts = registration.lookup(positions)
                output, delta, terms = forward(batch, audio_driven, regression, shifts)
                if use_sync:
                    terms["sync"] = model_config.loss.sync * sync.loss(output.rgb, starts)
                weights, critic_config = model_config.loss, train_config.adversarial
                hinge_on = weights.adversarial > 0 and critic_config.started(step, done)
                matching_on = weights.feature_match > 0 and critic_config.matching_started(step, done)
                if hinge_on or matching_on:
                    hinge, matched = adversary.generator_terms(output.rgb, batch.images, corners, matching_on)
                    if hinge_on:
                        terms["adversarial"] = weights.adversarial * hinge
                    if matching_on:
                        terms["feature_match"] = weights.feature_match * matched
                detailed |= hinge_on if weights.adversarial > 0 else matching_on
            loss = sum(terms.values())
            # one device → host transfer a step for the guard (and the log): loss, PSNR, mean opacity, deltaplane size
            watched = torch.stack([
                loss.detach().float(), psnr(output.rgb.detach(), batch.images).mean().float(),
                output.accumulation.detach().float().mean(), delta.detach().float().square().mean().sqrt()])
            # the backward, the updates and the discriminator's step are all queued before the transfer waits for
            # the forward, so the host issues them while the device catches up (docs/performance.md); a step the
            # guard rejects is undone by the rollback, which reloads the snapshot's weights and moments
            with record_function("train/backward"):
                optimizer.zero_grad(set_to_none=True)
                (scaler.scale(loss) if scaler else loss).backward()
            with record_function("train/optimizer"):
                _drop_inactive_gradients(optimizer, train_config, step)
                if scaler:
                    scaler.step(optimizer)
                else:
                    optimizer.step()
                if registration is not None:
                    registration.step(scaler)
                if scaler:
                    scaler.update()
            with record_function("train/discriminator"):
                critic = adversary.step(output.rgb, batch.images, corners) if adversary is not None else {}
            with record_function("train/wait"):
                loss_value, train_psnr, opacity, delta_rms = watched.tolist()
            reason = (guard.collapsed(train_psnr, opacity) if math.isfinite(loss_value) else f"loss {loss_value}")
            if reason is not None:
                snapshot = guard.rollback(step, reason)
                _load_snapshot(model, optimizer, names, companions, snapshot.tensors)
                LOG.warning("training collapsed at step %d (%s): back to step %d with the learning rates ×%g", step,
                            reason, snapshot.step, guard.lr_scale)
                logger.scalars(step, {"guard/rollback_to": snapshot.step, "guard/lr_scale": guard.lr_scale})
                step = snapshot.step
                bar.n = step
                continue
            step += 1
            bar.update(1)
            if step % train_config.log_every == 0 or step == train_config.steps:
                scalars = {"loss": loss_value, "train/psnr": train_psnr, "train/opacity": opacity,
                           "train/delta_rms": delta_rms, **{k: v.item() for k, v in critic.items()},
                           **{f"loss/{k}": v.item() for k, v in terms.items()},
                           **({k: v.item() for k, v in registration.scalars().items()} if registration else {})}
                logger.scalars(step, {**scalars, "train_seconds": time.perf_counter() - started})
                bar.set_postfix(loss=f"{loss_value:.3f}", psnr=f"{train_psnr:.2f}")
            if test_clip is not None and train_config.eval_every and step % train_config.eval_every == 0:
                metrics = _evaluate(model, test_clip, train_config, logger, step, started, device)
            if step % train_config.sample_every == 0:
                _write_sample(run_dir, model, test_clip or train_clip, step, logger)
            if step % train_config.checkpoint_every == 0:
                calibrate_lips(model, train_clip)
                _checkpoint(run_dir, model, optimizer, generator, names, device, step, started, metrics, companions,
                            guard)
    finally:
        bar.close()
    if adversary is not None and not detailed and step > start_step:
        LOG.warning("the run stopped at step %d, before the adversarial detail term's start (%s): its renders "
                    "will be soft; train for longer (docs/sharpness.md)", step,
                    train_config.adversarial.describe_start())
    evaluated_now = train_config.eval_every and step % train_config.eval_every == 0 and step > start_step
    calibrate_lips(model, train_clip)
    if test_clip is not None and not evaluated_now:
        metrics = _evaluate(model, test_clip, train_config, logger, step, started, device)
    if step % train_config.sample_every:
        _write_sample(run_dir, model, test_clip or train_clip, step, logger)
    _checkpoint(run_dir, model, optimizer, generator, names, device, step, started, metrics, companions, guard)
    logger.close()
    return TrainResult(run_dir, step, metrics)


def _audio_versions(dataset_dir: Path, manifest, clip: ClipData, config: TrainConfig,
                    normalize: bool) -> torch.Tensor | None:
    """[1 + copies, frames, 16, D]: the clip's audio windows and its speaker-augmented copies (None when off)."""
    augment = config.speaker_augment
    if augment.copies == 0:
        return None
    if manifest.audio.kind != "logmel":
        raise InputError(f"speaker augmentation recomputes the default log-mel features; this dataset has "
                         f"{manifest.audio.kind!r} features")
    from deltaplane.audio.augment import augmented_windows
    from deltaplane.audio.io import load_audio

    copies = augmented_windows(load_audio(dataset_dir / AUDIO_WAV), manifest.num_frames, manifest.fps, augment)
    if normalize:
        copies = np.stack([normalize_utterance(copy) for copy in copies])
    copies = torch.from_numpy(copies).to(clip.audio_features.device)
    return torch.cat([clip.audio_features[None], copies])


@torch.no_grad()
def calibrate_lips(model: TriplaneTalker, clip: ClipData) -> None:
    """Lip mode: fit the lip vector's gain (`fields.lips.LipVector.calibrate`) on the training frames the audio
    regression never saw (on all of them when the clip is too short to hold any out)."""
    if model.lips is None:
        return
    held_out = model.lips.held_out(clip.indices)
    positions = torch.nonzero(held_out if held_out.any() else torch.ones_like(held_out))[:, 0]
    audio = torch.cat([audio_context(clip.audio_features, clip.indices[part]) for part in positions.split(256)])
    predicted = torch.cat([model.predicted_lips(chunk, calibrated=False) for chunk in audio.split(256)])
    model.lips.calibrate(predicted, model.lips.coefficients(clip.mouth_shapes[positions]))


def _evaluate(model: TriplaneTalker, clip: ClipData, config: TrainConfig, logger: RunLogger, step: int,
              started: float, device: torch.device) -> dict[str, float]:
    count = min(config.eval_frames, len(clip))
    positions = torch.from_numpy(np.linspace(0, len(clip) - 1, count).round().astype(np.int64)).to(device)
    metrics = evaluate_clip(model, clip, positions)
    logger.scalars(step, {**metrics, "train_seconds": time.perf_counter() - started})
    return metrics


def _write_sample(run_dir: Path, model: TriplaneTalker, clip: ClipData, step: int, logger: RunLogger) -> None:
    import cv2

    from deltaplane.atomic import atomic_path

    image = sample_image(model, clip, position=len(clip) // 2)
    with atomic_path(run_dir / "samples" / f"step_{step:07d}.jpg") as tmp:
        cv2.imwrite(str(tmp), image[..., ::-1])
    logger.image(step, "sample", image)


def _checkpoint(run_dir: Path, model: TriplaneTalker, optimizer: torch.optim.Optimizer, generator: torch.Generator,
                names: dict[int, str], device: torch.device, step: int, started: float,
                metrics: dict[str, float], companions: list[Companion], guard: CollapseGuard) -> None:
    training_state = {**_optimiser_tensors(optimizer, names, companions), **_rng_state(generator, device),
                      ROLLBACKS: torch.tensor(guard.rollbacks)}
    meta = {"train_seconds": time.perf_counter() - started,
            "metrics": {k: v for k, v in metrics.items() if math.isfinite(v)}}
    checkpoint.save_checkpoint(run_dir, step, model.state_dict(), training_state, meta)
