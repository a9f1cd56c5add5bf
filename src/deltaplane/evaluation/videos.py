"""`deltaplane evaluate --pred A.mp4 --gt B.mp4`: score any video against a ground-truth video (other systems'
outputs included). Both are decoded at 25 fps and truncated to the shorter one; the prediction is resized to the
ground truth's frame size."""

from __future__ import annotations

from pathlib import Path

import torch

from deltaplane.atomic import write_json
from deltaplane.audio.io import load_audio
from deltaplane.errors import InputError
from deltaplane.evaluation.face import IdentityEmbedder
from deltaplane.evaluation.report import ReportData, write_report
from deltaplane.evaluation.scoring import (EvaluationConfig, load_experts, pair_metrics, prefixed, score_pair,
                                           sync_metrics)
from deltaplane.media.video import iter_frames, output_frame_count, probe_video
from deltaplane.metrics.syncnet import VIDEO_FPS

METRICS_JSON = "metrics.json"
REPORT_HTML = "report.html"


def notes(config: EvaluationConfig) -> list[str]:
    """The sampling and sign conventions a reader of the numbers needs."""
    return [f"Identity: dlib's 128-D descriptor on every {config.identity_every}th frame (≈95 ms per face on one "
            "core); distances below 0.6 mean the same person.",
            "Landmark sync: inner-lip opening vs the 1–4 kHz speech envelope, best offset within "
            f"±{config.max_sync_offset} frames; a positive offset means the mouth lags the sound.",
            "Mouth motion: inner-lip opening (points 60–67) over the outer-eye-corner distance per frame; "
            "opening_std_ratio compares its spread over frames with the reference's (ground truth for test/ and "
            "view/, the split's frames for cross/); a still mouth scores 0.",
            "LMD: mouth points 48–67 (dlib 68-point layout), each set mean-centred per frame, in pixels of a "
            "512-wide frame (Talk3D's protocol, spec §8).",
            "FID: clean-fid's Inception-v3 features of every k-th frame (k = fid_every); below about 2048 frames "
            "it is biased upwards, so compare only runs scored with the same frames and sampling."]


def write_outputs(output_dir: Path, metrics: dict, skipped: dict[str, str], report: ReportData) -> dict:
    """metrics.json ({flat keys..., "skipped": {key: reason}}) and report.html; returns the metrics.json content."""
    content = {**metrics, "skipped": skipped}
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / METRICS_JSON, content)
    write_report(output_dir / REPORT_HTML, report)
    return content


def evaluate_videos(prediction: Path, target: Path, output_dir: Path, config: EvaluationConfig,
                    device: torch.device, audio: Path | None = None, progress: bool = False) -> dict:
    """Score `prediction` against `target`; sync uses the prediction's audio (or `audio` when given)."""
    fps = float(VIDEO_FPS)
    prediction_info, target_info = probe_video(prediction), probe_video(target)
    num_frames = min(output_frame_count(info.duration, fps) for info in (prediction_info, target_info))
    if num_frames < 1:
        raise InputError(f"{prediction} or {target} is shorter than one frame at {fps:g} fps")
    experts = load_experts(config, device)
    result = score_pair(iter_frames(prediction, fps), iter_frames(target, fps), num_frames, config, experts,
                        IdentityEmbedder(), progress=progress)
    metrics, skipped = pair_metrics(result, config)
    metrics.update(width=target_info.width, height=target_info.height)
    skipped.update(experts.skipped)
    prediction_audio = load_audio(audio or prediction) if audio or prediction_info.has_audio else None
    found, reasons = sync_metrics(result.prediction, prediction_audio, fps, config, experts.syncnet)
    metrics.update(found)
    skipped.update(reasons)
    target_audio = load_audio(target) if target_info.has_audio else None
    found, reasons = sync_metrics(result.target, target_audio, fps, config, None)
    metrics.update(prefixed("gt/", found))
    skipped.update({f"gt/{key}": reason for key, reason in reasons.items() if "lse" not in key})
    report = ReportData(title=f"deltaplane evaluation: {prediction.name} vs {target.name}",
                        inputs={"prediction": str(prediction), "ground truth": str(target),
                                "audio for sync": str(audio or prediction)},
                        metrics=metrics, skipped=skipped,
                        series={"psnr": result.per_frame["psnr"], "psnr_face": result.per_frame["psnr_face"],
                                "lmd": result.per_frame["lmd"]},
                        strip=result.strip, notes=notes(config), detail_rows=result.detail_rows,
                        mouth_rows=[("ground truth", result.target.mouth_crops),
                                    ("prediction", result.prediction.mouth_crops)])
    return write_outputs(output_dir, metrics, skipped, report)
