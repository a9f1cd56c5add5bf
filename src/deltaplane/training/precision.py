"""Precision is one string, set in one place: it maps to an autocast context (and a GradScaler only for fp16)."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["32-true", "bf16-mixed", "16-mixed"]


def default_precision(device: torch.device) -> Precision:
    """bf16 autocast on CUDA (Hopper-class GPUs run it natively), full fp32 on CPU."""
    return "bf16-mixed" if device.type == "cuda" else "32-true"


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "32-true":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler | None:
    return torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
