"""`host_to_device`: the same values on the device, without the host waiting for it."""

from __future__ import annotations

import pytest
import torch

from deltaplane.devices import host_to_device


def test_host_to_device_on_the_cpu_is_the_tensor_itself() -> None:
    tensor = torch.arange(5)
    assert host_to_device(tensor, "cpu") is tensor


@pytest.mark.cuda
def test_host_to_device_copies_to_cuda_without_a_wait() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    tensor = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    torch.cuda.set_sync_debug_mode("error")  # a copy that waits for the device raises
    try:
        copied = host_to_device(tensor, torch.device("cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert copied.device.type == "cuda" and torch.equal(copied.cpu(), tensor)
