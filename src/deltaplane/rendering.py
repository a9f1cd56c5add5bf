"""`deltaplane render`: audio file → features → frames streamed into a watermarked, labelled H.264 mp4."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from deltaplane.atomic import check_outputs, created_dir
from deltaplane.audio.io import load_audio
from deltaplane.errors import InputError
from deltaplane.inference import (RenderOverrides, audio_windows, camera_path, depth_to_uint8, driving_conditions,
                                  load_run, plate_warp_path, render_clip, to_uint8)
from deltaplane.media.video import VideoWriter, output_frame_count
from deltaplane.models.triplane_talker import TriplaneTalker
from deltaplane.paste import PasteBackOptions, open_paste_back
from deltaplane.structs import Conditions

MIN_SECONDS = 0.2
Engine = Literal["auto", "reference", "fast"]
FAST_MIN_FRAMES = 2500
"""`auto` takes the fast path (compiled, CUDA graphs) on CUDA from this many frames (100 s at 25 fps): compiling
takes ~40–60 s, which the fast path (~5× the reference's frames/s) only wins back on clips this long."""


def _frames(model: TriplaneTalker, conditions: Conditions, cam2world: torch.Tensor, plate_warp: torch.Tensor | None,
            lip_smoothing: float, engine: Engine, progress: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The frames of the reference path or of the fast path (`fastpath.FastRenderer`, same frames within bf16)."""
    device = model.identity_planes.device
    if engine == "auto":
        engine = "fast" if device.type == "cuda" and cam2world.shape[0] >= FAST_MIN_FRAMES else "reference"
    if engine == "reference":
        return render_clip(model, conditions, cam2world, lip_smoothing=lip_smoothing, plate_warp=plate_warp)
    from deltaplane.fastpath import FastRenderer

    if progress and device.type == "cuda":
        print("compiling the fast rendering path (about a minute; cached for later runs)...", file=sys.stderr)
    return FastRenderer(model, batch_size=4).render_clip(conditions, cam2world, lip_smoothing=lip_smoothing,
                                                         plate_warp=plate_warp)


def render_video(run_dir: Path, audio_path: Path, output: Path, camera: str, depth_output: Path | None,
                 neutral: bool, lip_smoothing: float, watermark: bool, device: torch.device, progress: bool,
                 tags: dict[str, str], fps: float = 25.0, engine: Engine = "auto", attention_dir: Path | None = None,
                 attention_every: int = 25, paste: PasteBackOptions | None = None,
                 overrides: RenderOverrides | None = None) -> Path:
    """`paste`: put each frame back into the original video frame it replays (camera "dataset" only).
    `overrides`: settings that replace the run's (`inference.load_run`)."""
    model, run_config, driving = load_run(run_dir, device, overrides)
    pasting = open_paste_back(run_dir, run_config, driving, paste) if paste is not None else None
    if pasting is not None:  # the output must never replace the video it reads
        check_outputs(files={"-o": output, "--depth": depth_output}, inputs={"--source": pasting.source})
    samples = load_audio(audio_path)
    duration = samples.shape[0] / 16000
    if duration < MIN_SECONDS:
        raise InputError(f"{audio_path} holds only {duration:.2f} s of audio")
    num_frames = output_frame_count(duration, fps)
    conditions, replay = driving_conditions(audio_windows(run_config, samples, num_frames, fps), driving, neutral)
    cam2world, plate_warp = camera_path(camera, num_frames, driving), plate_warp_path(camera, num_frames, driving)
    if attention_dir is not None:
        from deltaplane.attention import export_attention

        export_attention(model, conditions, list(range(0, num_frames, max(attention_every, 1))), attention_dir)
    size = model.config.output_resolution
    mark = None
    if watermark:
        from deltaplane.watermark import WatermarkConfig, embed

        config = WatermarkConfig()

        def mark(frame: np.ndarray) -> np.ndarray:
            return embed(frame, config)

    volume = model.config.volume
    title = f"deltaplane render ({camera}{', pasted back' if pasting is not None else ''})"
    with contextlib.ExitStack() as stack:
        for path in (output, depth_output):  # a failed render leaves no new empty directory behind
            if path is not None:
                stack.enter_context(created_dir(path.parent))
        writer = stack.enter_context(VideoWriter(output, fps, audio=samples, audio_sample_rate=16000,
                                                 metadata=dict(tags, title=title)))
        depth_writer = None
        if depth_output is not None:
            depth_writer = stack.enter_context(VideoWriter(depth_output, fps, metadata=dict(tags, title="depth")))
        originals = None
        if pasting is not None:  # closed on any exit: it holds the source video open
            originals = stack.enter_context(contextlib.closing(pasting.originals(replay, size)))
        frames = _frames(model, conditions, cam2world, plate_warp, lip_smoothing, engine, progress)
        for rgb, depth in tqdm(frames, total=num_frames, disable=not progress, desc="render", unit="frame"):
            image = to_uint8(rgb)
            if originals is not None:
                image = next(originals).paste(image)
            writer.write(mark(image) if mark else image)
            if depth_writer is not None:
                depth_writer.write(depth_to_uint8(depth, volume.near, volume.far, size))
    return output
