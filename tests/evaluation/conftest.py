"""Weight files of the real FID Inception and ArcFace IResNet-18 architectures with random values (the loaders are
tested in tests/test_metrics_fid.py and tests/test_metrics_arcface.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deltaplane.metrics.arcface import IResNet
from deltaplane.metrics.fid import FIDInceptionV3


def _he_initialised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """He-initialised convolutions, so that features keep their scale through ~50 layers (torch's default shrinks
    them about 6× per layer)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


@pytest.fixture(scope="session")
def inception_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(_he_initialised(FIDInceptionV3(), seed=10).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def arcface_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("arcface") / "backbone.pth"
    torch.save(_he_initialised(IResNet(18), seed=11).state_dict(), path)
    return path
