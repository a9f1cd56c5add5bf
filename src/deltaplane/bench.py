"""`deltaplane bench`: the plain fp32 reference path and the fast path side by side, on the same weights and inputs.

For every batch size, each path renders the same clip (same conditions, cameras and random-number seed):
* frames/s: frames over the wall time of the whole clip, with no synchronisation inside it;
* latency p50 / p99 per frame: one synchronisation per batch; a frame is ready when its batch is, so every frame of
  a batch has the batch's latency (the time from the end of the previous batch to the end of this one);
* peak memory: device memory allocated during the path's setup, warm-up and latency pass, one copy of the model
  weights included (CUDA only);
* max |Δ| and PSNR of the path's frames against the reference's frames (images in [-1, 1]).

Inputs: a run's model and driving tracks with random audio windows, or (`random_weights`) a preset-sized model with
random weights and synthetic tracks: speed does not depend on the weights or the audio. The camera orbits. This
module imports no media, audio-feature or preprocessing code, so it runs on a bare GPU image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from deltaplane.fastpath import FastRenderConfig, FastRenderer
from deltaplane.geometry.cameras import orbit_cam2world, talk3d_orbit_angles
from deltaplane.geometry.lips import MOUTH_SHAPE_DIM
from deltaplane.inference import DrivingTracks, camera_path, driving_conditions, load_run, render_clip
from deltaplane.models.triplane_talker import TORSO_FOLLOW, TriplaneTalker
from deltaplane.presets import get_preset
from deltaplane.structs import Conditions

REFERENCE = "reference"
FrameIterator = Iterator[tuple[Float[Tensor, "3 H W"], Float[Tensor, "1 h w"]]]


@dataclass(frozen=True)
class PathResult:
    """One rendering path at one batch size."""

    path: str
    """"reference" or the name of a fast-path variant."""
    batch: int
    frames: int
    frames_per_second: float
    latency_p50_ms: float
    """Median per-frame latency (the latency of the frame's batch)."""
    latency_p99_ms: float
    peak_memory_mib: float | None
    """Peak allocated device memory of the path, one copy of the weights included; None off CUDA."""
    setup_seconds: float
    """Building the renderer: model copy, compilation, CUDA-graph capture (0 for the reference)."""
    speedup: float
    """frames/s over the reference's at the same batch size."""
    max_abs_diff: float
    """Max |frame − reference frame| over the clip, images in [-1, 1]."""
    psnr_db: float | None
    """PSNR against the reference frames (peak-to-peak 2); None for the reference itself."""


@dataclass(frozen=True)
class BenchReport:
    device: str
    torch_version: str
    model: str
    """What was rendered: the run directory or the preset with random weights, and the output size."""
    results: tuple[PathResult, ...]


def random_weights_model(preset: str, device: torch.device, seed: int = 0,
                         background: Literal["field", "plate"] = "field", **changes: object) -> TriplaneTalker:
    """A preset-sized model: default initialisation plus N(0, 0.02²) on every parameter, so that no part (the
    zero-initialised last deltaplane conv and ToRGB layers) is exactly zero and the comparison sees every part.
    `background="plate"` adds a random background plate (its compositing is part of the timing); `changes` are
    further `TriplaneTalkerConfig` fields. In lip mode the lip basis is fitted to random mouths, as many as the
    snap's bank holds, so that the snap costs what it does in a trained model."""
    torch.manual_seed(seed)
    model = TriplaneTalker(replace(get_preset(preset)[0], background=background, **changes))
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
        if background == "plate":
            model.plate.uniform_(-1, 1, generator=generator)
        if model.lips is not None:
            model.lips.fit(torch.randn(model.config.lips.bank_size, MOUTH_SHAPE_DIM, generator=generator))
    return model.to(device).eval()


def synthetic_driving(num_frames: int, landmark_inputs: int) -> DrivingTracks:
    """Smoothly varying eye / head-angle / landmark tokens (`landmark_inputs` of them:
    `ConditionEncoderConfig.landmark_inputs`) and orbit cameras."""
    phase = torch.linspace(0, 2 * math.pi, num_frames)
    angles = talk3d_orbit_angles(num_frames)
    return DrivingTracks(eye=0.25 + 0.05 * torch.sin(3 * phase),
                         angles=torch.stack((angles[:, 0], angles[:, 1], 0.05 * torch.sin(phase)), dim=-1),
                         landmarks=0.3 * torch.sin(phase[:, None] + torch.arange(landmark_inputs)),
                         cam2world=orbit_cam2world(angles[:, 0], angles[:, 1]))


def bench_inputs(model: TriplaneTalker, driving: DrivingTracks, num_frames: int, seed: int = 0
                 ) -> tuple[Conditions, Float[Tensor, "frames 4 4"]]:
    """Random audio windows (speed does not depend on the audio), the driving tokens and an orbit camera path."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(num_frames, 16, model.config.audio.feature_dim, generator=generator)
    conditions, _ = driving_conditions(features, driving, neutral=False)
    return conditions, camera_path("orbit", num_frames, driving)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _latencies(frames: FrameIterator, num_frames: int, batch: int, device: torch.device) -> list[float]:
    """Seconds per batch, synchronising at the end of every batch."""
    latencies = []
    _synchronize(device)
    start = time.perf_counter()
    for index, _ in enumerate(frames):
        if (index + 1) % batch == 0 or index + 1 == num_frames:
            _synchronize(device)
            now = time.perf_counter()
            latencies.append(now - start)
            start = now
    return latencies


def _percentile(values: Sequence[float], fraction: float) -> float:
    return float(torch.tensor(values, dtype=torch.float64).quantile(fraction))


def _run_path(name: str, make_frames: Callable[[], Callable[[], FrameIterator]], batch: int, num_frames: int,
              device: torch.device, weight_bytes: int) -> tuple[dict, Float[Tensor, "frames 3 H W"]]:
    """Time one path: setup, warm-up (two batches), latency pass, then a throughput pass whose frames are kept."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device) if cuda else 0
    started = time.perf_counter()
    frames_fn = make_frames()
    setup_seconds = time.perf_counter() - started
    for index, _ in enumerate(frames_fn()):
        if index + 1 >= min(2 * batch, num_frames):
            break
    latencies = _latencies(frames_fn(), num_frames, batch, device)
    peak = (torch.cuda.max_memory_allocated(device) - base + weight_bytes) / 2**20 if cuda else None
    _synchronize(device)
    started = time.perf_counter()
    frames = [rgb for rgb, _ in frames_fn()]
    _synchronize(device)
    seconds = time.perf_counter() - started
    timing = dict(path=name, batch=batch, frames=num_frames, frames_per_second=num_frames / seconds,
                  latency_p50_ms=1000 * _percentile(latencies, 0.5), latency_p99_ms=1000 * _percentile(latencies, 0.99),
                  peak_memory_mib=peak, setup_seconds=setup_seconds)
    return timing, torch.stack(frames).float()


def run_bench(model: TriplaneTalker, conditions: Conditions, cam2world: Float[Tensor, "frames 4 4"],
              batch_sizes: Sequence[int], variants: dict[str, FastRenderConfig], description: str) -> BenchReport:
    """The reference and every fast variant at every batch size, on the same model and inputs."""
    device = model.identity_planes.device
    num_frames = cam2world.shape[0]
    weight_bytes = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    results = []
    for batch in batch_sizes:
        def reference() -> Callable[[], FrameIterator]:
            return lambda: render_clip(model, conditions, cam2world, batch_size=batch)

        timing, reference_frames = _run_path(REFERENCE, reference, batch, num_frames, device, weight_bytes)
        reference_fps = timing["frames_per_second"]
        results.append(PathResult(**timing, speedup=1.0, max_abs_diff=0.0, psnr_db=None))
        for name, config in variants.items():
            def fast(config: FastRenderConfig = config) -> Callable[[], FrameIterator]:
                renderer = FastRenderer(model, batch, config)
                return lambda: renderer.render_clip(conditions, cam2world)

            timing, frames = _run_path(name, fast, batch, num_frames, device, 0)
            error = frames - reference_frames
            mse = error.square().mean().item()
            results.append(PathResult(**timing, speedup=timing["frames_per_second"] / reference_fps,
                                      max_abs_diff=error.abs().max().item(),
                                      psnr_db=10 * math.log10(4.0 / mse) if mse > 0 else math.inf))
            del frames, error
        del reference_frames
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return BenchReport(device=name, torch_version=torch.__version__, model=description, results=tuple(results))


def format_report(report: BenchReport) -> str:
    """A fixed-width table, one row per path and batch size."""
    lines = [f"device: {report.device} | torch {report.torch_version} | {report.model}",
             f"{'path':<12}{'batch':>6}{'frames':>7}{'frames/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'peak MiB':>10}"
             f"{'setup s':>9}{'x ref':>7}{'max|diff|':>11}{'PSNR dB':>9}"]
    for r in report.results:
        peak = "-" if r.peak_memory_mib is None else f"{r.peak_memory_mib:.0f}"
        psnr = "-" if r.psnr_db is None else f"{r.psnr_db:.1f}"
        lines.append(f"{r.path:<12}{r.batch:>6}{r.frames:>7}{r.frames_per_second:>10.1f}{r.latency_p50_ms:>9.2f}"
                     f"{r.latency_p99_ms:>9.2f}{peak:>10}{r.setup_seconds:>9.1f}{r.speedup:>7.2f}"
                     f"{r.max_abs_diff:>11.2e}{psnr:>9}")
    return "\n".join(lines)


def bench(run_dir: Path | None, device: torch.device, batch_sizes: Sequence[int] = (1, 4), num_frames: int = 120,
          preset: str = "fast", seed: int = 0, variants: dict[str, FastRenderConfig] | None = None,
          background: Literal["field", "plate"] = "field", torso: bool = False) -> BenchReport:
    """Load a run (or, with `run_dir` None, build a `preset` model with random weights, `background` and, with
    `torso`, a torso of its own (`TORSO_FOLLOW`)) and bench it."""
    if run_dir is None:
        model = random_weights_model(preset, device, seed, background, torso_follow=TORSO_FOLLOW if torso else None)
        driving = synthetic_driving(max(num_frames, 2), model.config.conditions.landmark_inputs)
        description = f"preset {preset}, random weights, background {background}{', torso' if torso else ''}"
    else:
        model, _, driving = load_run(Path(run_dir), device)
        description = f"run {run_dir}"
    size = model.config.output_resolution
    conditions, cam2world = bench_inputs(model, driving, num_frames, seed)
    variants = variants or {"fast": FastRenderConfig.for_device(device)}
    return run_bench(model, conditions, cam2world, batch_sizes, variants, f"{description}, {size}x{size} output")
