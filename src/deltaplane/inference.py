"""Rendering a trained talker driven by new audio: load a run, build camera paths and tokens, stream frames.

`render_clip` is the library entry point ("pipeline"): it yields frames as they are rendered, so a caller can
encode them immediately and never hold the whole video in memory.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from deltaplane import checkpoint
from deltaplane.audio.encoder import ema_smooth
from deltaplane.audio.features import LogMelExtractor, frame_windows, normalize_utterance
from deltaplane.config_io import from_dict
from deltaplane.data.dataset import audio_context, read_arrays, to_uint8
from deltaplane.errors import InputError
from deltaplane.geometry.cameras import (DEFAULT_FOCAL, Cameras, intrinsics_from_focal, orbit_cam2world,
                                         spiral_angles, talk3d_orbit_angles)
from deltaplane.models.triplane_talker import TriplaneTalker, TriplaneTalkerConfig
from deltaplane.structs import Conditions, NeutralTokens


@dataclass(frozen=True)
class DrivingTracks:
    """Per-frame eye / head-angle / landmark tokens and cameras of the training video, replayed for new audio."""

    eye: Float[Tensor, " frames"]
    angles: Float[Tensor, "frames 3"]
    landmarks: Float[Tensor, "frames landmark_inputs"]
    cam2world: Float[Tensor, "frames 4 4"]
    plate_warps: Float[Tensor, "frames 2 3"] | None = None
    """Where each training frame shows the background plate (`data.dataset.ClipData.plate_warps`); None for runs
    saved before the tracks carried them (their dataset-camera renders place the plate by its plane)."""

    def replay(self, num_frames: int) -> Tensor:
        """Indices that play the training video forward and backward (no jump at the loop point)."""
        length = self.eye.shape[0]
        period = max(2 * length - 2, 1)
        phase = torch.arange(num_frames) % period
        return torch.where(phase < length, phase, period - phase)


@dataclass(frozen=True)
class RenderOverrides:
    """Rendering settings that replace a trained run's (None keeps the run's)."""

    mouth_x_blur: float | None = None
    """σ in plane texels of the xy plane's blur along x in the mouth box (`TriplaneTalkerConfig.mouth_x_blur`,
    `--mouth-x-blur`)."""
    mouth_scale: float | None = None
    """Factor on each driving clip's lip gain (`LipConfig.mouth_scale`, `--mouth-scale`): how far the mouth moves;
    runs with a lip vector only."""

    def apply(self, config: TriplaneTalkerConfig, run_dir: Path) -> TriplaneTalkerConfig:
        """`config` with these settings; an InputError names the flag that does not fit the run."""
        if self.mouth_x_blur is not None:
            try:  # the configs' own checks: a run without a mouth box, a negative σ; below, a factor ≤ 0
                config = replace(config, mouth_x_blur=self.mouth_x_blur)
            except ValueError as exc:
                raise InputError(f"--mouth-x-blur {self.mouth_x_blur} does not fit {run_dir}: {exc}") from exc
        if self.mouth_scale is not None:
            if config.audio_token != "lips":
                raise InputError(f"--mouth-scale needs a run whose audio drives a lip vector (the fast preset's); "
                                 f"{run_dir} has audio token {config.audio_token!r}")
            try:
                config = replace(config, lips=replace(config.lips, mouth_scale=self.mouth_scale))
            except ValueError as exc:
                raise InputError(f"--mouth-scale {self.mouth_scale}: {exc}") from exc
        return config


def describe_rendering(config: TriplaneTalkerConfig) -> str:
    """The settings of `RenderOverrides` that a model renders with, for reports."""
    scale = f"mouth scale {config.lips.mouth_scale:g}, " if config.audio_token == "lips" else ""
    return f"{scale}mouth x-blur {config.mouth_x_blur:g} texels"


def load_run(run_dir: Path, device: torch.device, overrides: RenderOverrides | None = None
             ) -> tuple[TriplaneTalker, dict, DrivingTracks]:
    """The trained model (eval mode) of the newest checkpoint, with `overrides` (None: as trained), the run config
    and the driving tracks."""
    run_dir = Path(run_dir)
    config = checkpoint.read_run_config(run_dir)
    latest = checkpoint.latest_checkpoint(run_dir)
    if latest is None:
        raise InputError(f"{run_dir} has no checkpoint yet; train first (`deltaplane train ... -o {run_dir}`)")
    model = TriplaneTalker((overrides or RenderOverrides()).apply(from_dict(TriplaneTalkerConfig, config["model"]),
                                                                 run_dir))
    model.load_state_dict(checkpoint.load_checkpoint(latest, with_training_state=False).model_state)
    tracks_path = run_dir / checkpoint.DRIVING_TRACKS
    if not tracks_path.is_file():
        raise InputError(f"{tracks_path} is missing; the run directory is incomplete")
    tracks = read_arrays(tracks_path, None, "the run directory is damaged; train again")
    names = ("eye", "angles", "landmarks", "cam2world")
    if not set(names) <= tracks.keys() or len({tracks[name].shape[0] for name in names}) != 1:
        raise InputError(f"{tracks_path} lacks some of {', '.join(names)} or their lengths differ; the run directory "
                         "is damaged; train again")
    warps = tracks.get("plate_warps")
    if warps is not None and warps.shape != (tracks["eye"].shape[0], 2, 3):
        raise InputError(f"{tracks_path} holds plate warps of shape {warps.shape}, not one 2×3 per frame; the run "
                         "directory is damaged; train again")
    driving = DrivingTracks(*(torch.from_numpy(tracks[name]).float() for name in names),
                            plate_warps=None if warps is None else torch.from_numpy(warps).float())
    return model.to(device).eval(), config, driving


_FIXED = re.compile(r"^yaw=(?P<yaw>[-+]?\d+(\.\d*)?),pitch=(?P<pitch>[-+]?\d+(\.\d*)?)$")


MAX_YAW_DEGREES = 60.0
MAX_PITCH_DEGREES = 40.0
"""Fixed cameras are accepted up to these angles: twice the range the seeds evaluate (±30° yaw, ±20° pitch).
Farther out the video never shows the head, and the render is a guess."""


def check_camera(spec: str) -> None:
    """Raise InputError for a --camera spec that `camera_path` would refuse (before any work starts)."""
    if spec in ("dataset", "front", "orbit", "spiral"):
        return
    match = _FIXED.match(spec.replace(" ", ""))
    if match is None:
        raise InputError(f"unknown camera {spec!r}; use dataset, front, orbit, spiral or yaw=DEG,pitch=DEG")
    yaw, pitch = float(match["yaw"]), float(match["pitch"])
    if abs(yaw) > MAX_YAW_DEGREES or abs(pitch) > MAX_PITCH_DEGREES:
        raise InputError(f"camera yaw={yaw:g}, pitch={pitch:g} is outside the supported ±{MAX_YAW_DEGREES:g}° yaw, "
                         f"±{MAX_PITCH_DEGREES:g}° pitch (the video shows the head near frontal only)")


def camera_path(spec: str, num_frames: int, driving: DrivingTracks | None = None) -> Float[Tensor, "frames 4 4"]:
    """cam2world per frame for a --camera spec: dataset | front | yaw=DEG,pitch=DEG | orbit | spiral. Only
    "dataset" reads `driving` (the training frames' cameras it replays)."""
    check_camera(spec)
    if spec == "dataset":
        if driving is None:
            raise ValueError("the dataset camera replays the driving tracks' cameras: pass them")
        return driving.cam2world[driving.replay(num_frames)]
    if spec == "front":
        angles = torch.zeros(num_frames, 2)
    elif spec == "orbit":
        angles = talk3d_orbit_angles(num_frames)
    elif spec == "spiral":
        angles = spiral_angles(num_frames)
    else:
        match = _FIXED.match(spec.replace(" ", ""))
        yaw, pitch = math.radians(float(match["yaw"])), math.radians(float(match["pitch"]))
        angles = torch.tensor([[yaw, pitch]]).expand(num_frames, 2)
    return orbit_cam2world(angles[:, 0], angles[:, 1])


def plate_warp_path(spec: str, num_frames: int, driving: DrivingTracks) -> Float[Tensor, "frames 2 3"] | None:
    """The plate warps that go with `camera_path(spec, ...)`: for "dataset", those of the training frames its
    cameras replay, so the plate lands where those frames show the backdrop, as in training; None (the plate's
    plane) for novel cameras, which no frame shows, and for runs whose tracks carry no warps."""
    if spec != "dataset" or driving.plate_warps is None:
        return None
    return driving.plate_warps[driving.replay(num_frames)]


def audio_windows(run_config: dict, samples: np.ndarray, num_frames: int, fps: float
                  ) -> Float[Tensor, "frames 16 dim"]:
    """Frame windows of 16 kHz `samples` with the extractor (and per-utterance normalisation) the run was trained
    with."""
    audio_dim = run_config["model"]["audio"]["feature_dim"]
    extractor = LogMelExtractor()
    if extractor.dim != audio_dim:
        raise InputError(f"this run was trained on {audio_dim}-D audio features; rendering new audio currently "
                         f"supports the default log-mel features ({extractor.dim}-D) only")
    windows = frame_windows(extractor(samples), num_frames, fps)
    if run_config["model"]["audio"].get("normalize", False):
        windows = normalize_utterance(windows)
    return torch.from_numpy(windows)


def driving_conditions(audio_features: Float[Tensor, "frames 16 dim"], driving: DrivingTracks,
                       neutral: bool) -> tuple[Conditions, Tensor]:
    """Conditions for every output frame (audio from the new clip) and the replayed training-frame indices."""
    num_frames = audio_features.shape[0]
    replay = driving.replay(num_frames)
    audio = audio_context(audio_features, torch.arange(num_frames))
    conditions = Conditions(audio=audio, eye=driving.eye[replay], angles=driving.angles[replay],
                            landmarks=driving.landmarks[replay])
    if neutral:
        conditions = conditions.neutralized(torch.ones(num_frames, dtype=torch.bool),
                                            NeutralTokens.of(driving.eye, driving.landmarks))
    return conditions, replay


@torch.no_grad()
def render_clip(model: TriplaneTalker, conditions: Conditions, cam2world: Float[Tensor, "frames 4 4"],
                batch_size: int = 4, lip_smoothing: float = 0.0, seed: int = 0,
                plate_warp: Float[Tensor, "frames 2 3"] | None = None
                ) -> Iterator[tuple[Float[Tensor, "3 H W"], Float[Tensor, "1 h w"]]]:
    """Yield (rgb in [-1, 1], depth) per frame. The identity encoder runs once; audio codes are optionally
    EMA-smoothed over time (Talk3D's lip smoothing). `plate_warp` (plate mode, cameras of dataset frames: see
    `plate_warp_path`) places the plate as training did; without it the plate's plane does. `seed` draws the ray
    samples of a model that samples at random (in training mode, or with `VolumeRenderConfig.jitter_at_inference`);
    in eval mode they are fixed."""
    device = model.identity_planes.device
    size = model.config.output_resolution
    num_frames = cam2world.shape[0]
    audio_codes = model.clip_audio_codes(conditions.audio)
    if lip_smoothing > 0:
        audio_codes = ema_smooth(audio_codes, alpha=lip_smoothing)
    encoded = model.encode_identity()
    generator = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, num_frames, batch_size):
        part = slice(start, min(start + batch_size, num_frames))
        chunk = Conditions(*(getattr(conditions, name)[part].to(device)
                             for name in ("audio", "eye", "angles", "landmarks")))
        tokens = model.tokens(chunk, audio_code=audio_codes[part])
        planes, _ = model.planes(tokens, encoded_identity=encoded.expand(tokens.shape[0]))
        count = tokens.shape[0]
        cameras = Cameras(cam2world[part].to(device), intrinsics_from_focal(DEFAULT_FOCAL, size, size, count,
                                                                            device=device), size, size)
        warp = None if plate_warp is None else plate_warp[part].to(device)
        output = model.render(planes, cameras, generator=generator, plate_warp=warp,
                              torso=model.torso_transforms(chunk.angles))
        for index in range(count):
            yield output.rgb[index], output.depth[index]


def depth_to_uint8(depth: Float[Tensor, "1 h w"], near: float, far: float, size: int) -> np.ndarray:
    """Depth → grey uint8 HxWx3 (near = white), upsampled to `size`."""
    normalised = ((far - depth.float()) / (far - near)).clamp(0, 1)
    image = torch.nn.functional.interpolate(normalised[None], size=(size, size), mode="bilinear")[0]
    return (image * 255).round().byte().expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
