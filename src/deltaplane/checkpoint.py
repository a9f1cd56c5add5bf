"""Checkpoints: safetensors weights + JSON metadata with a format version, written atomically.

Layout of a run directory:
    config.json                      {"format_version", "method", "preset", "model": {...}, "train": {...}, ...}
    checkpoints/step_000500/         model.safetensors, training_state.safetensors (Adam moments, RNG; with the
                                     adversarial term also the discriminator, `training.adversarial`), meta.json
    checkpoints/latest               name of the newest complete checkpoint directory
A checkpoint directory appears under its final name only once it is complete (atomic rename), and `latest` is
updated after it, so an interrupted save never shadows the previous checkpoint.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from deltaplane.atomic import atomic_dir, atomic_path, write_json
from deltaplane.config_io import from_dict, read_json
from deltaplane.errors import InputError
from deltaplane.models.triplane_talker import TriplaneTalker, TriplaneTalkerConfig

FORMAT_VERSION = 1
"""Bump on any change of parameter names/shapes or of this layout."""
CHECKPOINTS = "checkpoints"
CONFIG = "config.json"
DRIVING_TRACKS = "driving_tracks.npz"
"""Per-frame eye / angle / landmark tokens and cameras of the training split, replayed when rendering new audio."""
MODEL_LIMITS = {"plane_channels": 256, "plane_resolution": 1024, "render_resolution": 512}
"""Largest sizes a run's model section may ask for (the full preset uses 32, 256 and 128): a damaged or edited
config.json is refused before it allocates anything (one such file asked for 3.8 TB of planes)."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    step: int
    model_state: dict[str, torch.Tensor]
    training_state: dict[str, torch.Tensor]
    meta: dict[str, Any]


def write_run_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_json(run_dir / CONFIG, {"format_version": FORMAT_VERSION, **config})


def read_run_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a deltaplane run directory (no {CONFIG})")
    config = read_json(path)
    if config.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{path} has format_version {config.get('format_version')}; this deltaplane reads "
                         f"{FORMAT_VERSION}")
    _check_model(path, config.get("model"), latest_checkpoint(run_dir))
    return config


def _check_model(path: Path, section: Any, latest: Path | None) -> None:
    """The model section of config.json `path` is a config within MODEL_LIMITS whose model has the tensor shapes of
    the newest checkpoint's; the model is built on the meta device, so nothing is allocated."""
    try:
        model_config = from_dict(TriplaneTalkerConfig, section)
        for name, limit in MODEL_LIMITS.items():
            if not 1 <= getattr(model_config, name) <= limit:
                raise ValueError(f"{name} {getattr(model_config, name)} is outside [1, {limit}]")
        with torch.device("meta"):
            expected = {name: list(tensor.shape) for name, tensor in TriplaneTalker(model_config).state_dict().items()}
    except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: e.g. a negative size
        raise InputError(f"{path} has an invalid model section ({exc}); the run directory is damaged") from exc
    if latest is None:
        return
    try:
        with safe_open(str(latest / "model.safetensors"), "pt") as weights:
            found = {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except (OSError, SafetensorError) as exc:
        raise InputError(f"checkpoint {latest} is corrupt or incomplete: {exc}") from exc
    for name in sorted(expected.keys() | found.keys()):
        if expected.get(name) != found.get(name):
            raise InputError(f"checkpoint {latest} does not fit {path}: {name} is {found.get(name, 'absent')} in the "
                             f"weights but {expected.get(name, 'absent')} in the config; restore the run's config.json "
                             "or train again")


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().contiguous().cpu() for name, tensor in state.items()}


def save_checkpoint(run_dir: Path, step: int, model_state: dict[str, torch.Tensor],
                    training_state: dict[str, torch.Tensor], meta: dict[str, Any], keep: int = 2) -> Path:
    """Write checkpoints/step_XXXXXX atomically, point `latest` at it and keep the newest `keep` checkpoints."""
    root = Path(run_dir) / CHECKPOINTS
    name = f"step_{step:07d}"
    with atomic_dir(root / name) as tmp:
        save_file(_contiguous(model_state), str(tmp / "model.safetensors"))
        save_file(_contiguous(training_state), str(tmp / "training_state.safetensors"))
        (tmp / "meta.json").write_text(json.dumps({"format_version": FORMAT_VERSION, "step": step, **meta}, indent=2))
    with atomic_path(root / "latest") as tmp_latest:
        tmp_latest.write_text(name + "\n")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return root / name


CHECKPOINT_NAME = re.compile(r"step_\d{7}")
"""What `latest` may name: a checkpoint directory beside it, never a path elsewhere (`../../somewhere`, `/etc`)."""


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint directory (None before the first); a damaged pointer is an InputError."""
    pointer = Path(run_dir) / CHECKPOINTS / "latest"
    if not pointer.is_file():
        return None
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {pointer}: {exc}; the run directory is damaged") from exc
    if not CHECKPOINT_NAME.fullmatch(name) or (pointer.parent / name).is_symlink():
        raise InputError(f"{pointer} names {name[:80]!r}, not a checkpoint of this run (step_NNNNNNN); the run "
                         "directory is damaged")
    path = pointer.parent / name
    return path if path.is_dir() else None


def load_checkpoint(path: Path, with_training_state: bool = True) -> LoadedCheckpoint:
    """Load a checkpoint directory; corrupt or incomplete files raise InputError naming the file."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        model_state = load_file(str(path / "model.safetensors"))
        training_state = load_file(str(path / "training_state.safetensors")) if with_training_state else {}
    except (OSError, json.JSONDecodeError, SafetensorError, ValueError) as exc:
        raise InputError(f"checkpoint {path} is corrupt or incomplete: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(f"checkpoint {path} has format_version {meta.get('format_version')}, expected "
                         f"{FORMAT_VERSION}")
    return LoadedCheckpoint(int(meta["step"]), model_state, training_state, meta)


def optimizer_to_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str]) -> dict[str, torch.Tensor]:
    """Flatten an Adam-style optimizer state into named tensors (`optim.<param>.<key>`); `names` maps id(param)."""
    tensors: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                value = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"optim.{names[id(param)]}.{key}"] = value
    return tensors


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, names: dict[int, str],
                           tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of `optimizer_to_tensors` (tensors are moved to each parameter's device; Adam's step count too when
    the optimizer is fused or capturable, which keep it there)."""
    for group in optimizer.param_groups:
        step_on_device = bool(group.get("fused") or group.get("capturable"))
        for param in group["params"]:
            prefix = f"optim.{names[id(param)]}."
            state = {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}
            if state:
                optimizer.state[param] = {key: value.to(param.device) if key != "step" or step_on_device else value
                                          for key, value in state.items()}
