"""Copies to the device that do not make the host wait for it."""

from __future__ import annotations

import torch
from torch import Tensor


def host_to_device(tensor: Tensor, device: torch.device | str) -> Tensor:
    """`tensor.to(device)` that is only queued: a host tensor bound for CUDA is pinned first (a copy from pageable
    memory waits for everything queued before it; a training step drew a dozen such small tensors from its CPU
    generator and left the GPU idle at each). The caching host allocator keeps the pinned block until the copy
    has run. Inside a compiled step it is a plain copy, which the graph schedules itself (Dynamo cannot trace
    `pin_memory`)."""
    if torch.device(device).type != "cuda" or tensor.device.type != "cpu" or torch.compiler.is_compiling():
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)
