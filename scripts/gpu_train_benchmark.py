"""GPU reality check for the `fast` preset (issue: BENCHMARKS.md numbers come from this script).

    python scripts/gpu_train_benchmark.py DATASET RUN_DIR --minutes 5     # train (or resume) until 5 min of training
    python scripts/gpu_train_benchmark.py DATASET RUN_DIR --minutes 10    # resume until 10 min, then:
    python scripts/gpu_train_benchmark.py DATASET RUN_DIR --render-fps    # 512² rendering speed at batch 1

Every call prints a short table and appends a JSON line to $OUT/results.jsonl (or ./results.jsonl).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from deltaplane import api
from deltaplane.checkpoint import latest_checkpoint
from deltaplane.data.dataset import load_clip
from deltaplane.inference import driving_conditions, load_run, render_clip
from deltaplane.training.logging import read_log


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("DELTAPLANE_COMMIT", "unknown")


def train_until(dataset: Path, run_dir: Path, minutes: float) -> dict:
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    api.train(dataset, run_dir, preset="fast", minutes=minutes,
              resume=latest_checkpoint(run_dir) is not None, progress=False)
    log = read_log(run_dir)
    steps = [r for r in log if "loss" in r]
    evals = [r for r in log if "test/psnr" in r]
    last = evals[-1]
    at_five = min(evals, key=lambda r: abs(r["train_seconds"] - 300))
    curve = [(round(r["train_seconds"]), round(r["test/psnr"], 2), round(r["test/ssim"], 4)) for r in evals]
    return {"psnr_near_5min": at_five["test/psnr"], "ssim_near_5min": at_five["test/ssim"],
            "seconds_near_5min": at_five["train_seconds"], "curve_seconds_psnr_ssim": curve,"phase": f"train_{minutes:g}min", "step": steps[-1]["step"], "train_seconds": last["train_seconds"],
            "steps_per_second": steps[-1]["step"] / steps[-1]["train_seconds"],
            "test_psnr": last["test/psnr"], "test_ssim": last["test/ssim"], "test_psnr_face": last["test/psnr_face"],
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30, "wall_seconds": time.perf_counter() - started}


@torch.no_grad()
def render_fps(dataset: Path, run_dir: Path, frames: int = 200) -> dict:
    device = torch.device("cuda")
    model, _, driving = load_run(run_dir, device)
    _, clip = load_clip(dataset, "test", size=model.config.output_resolution,
                        normalize_audio=model.config.audio.normalize)
    features = clip.audio_features[clip.indices[0]:][:frames]
    conditions, _ = driving_conditions(features, driving, neutral=False)
    cam2world = driving.cam2world[driving.replay(features.shape[0])]
    for _ in render_clip(model, conditions, cam2world[:8], batch_size=1):  # warm-up
        pass
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    count = 0
    for rgb, _ in render_clip(model, conditions, cam2world, batch_size=1):
        count += 1
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"phase": "render", "frames": count, "fps_batch1_512": count / seconds,
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--render-fps", action="store_true")
    args = parser.parse_args()
    result = render_fps(args.dataset, args.run_dir) if args.render_fps else \
        train_until(args.dataset, args.run_dir, args.minutes)
    result.update(device=torch.cuda.get_device_name(), torch=torch.__version__, commit=_commit())
    out = Path(os.environ.get("OUT", "."))
    with open(out / "results.jsonl", "a") as handle:
        handle.write(json.dumps(result) + "\n")
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value:.4g}" if isinstance(value, float) else f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
