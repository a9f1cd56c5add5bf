"""How many tensor operations one training step of a `fast` variant dispatches, and from where (docs/performance.md
"Training"): on the lent H200 the device is busy only about half of a step because the host spends ~90 ms issuing
the forward's operations and ~120 ms the backward's, so the count per code site is what a fusion would remove.

    python scripts/train_op_count.py DATASET [--variant base] [--top 25]

Runs one step's forward (the model, its loss terms and the lip regressions) and backward on the CPU, counting every
aten operation the dispatcher sees. Forward operations are charged to the innermost `deltaplane` function on the
Python stack (file:function); the backward's run inside the autograd engine, without a Python stack, and are
counted by operation name. The counts depend on the configuration, not on the device: the CPU takes `grid_sample`
where CUDA takes the Triton lookup (one operation there, a few here), so the lookup's rows differ slightly.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deltaplane.data.dataset import lip_frames, load_clip, make_batch
from deltaplane.models.triplane_talker import TriplaneTalker
from gpu_lip_motion import variant_configs

PACKAGE = f"{Path(__file__).resolve().parents[1] / 'src' / 'deltaplane'}"


def site() -> str:
    """The innermost frame of the package's own code on the Python stack ("backward" when there is none)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_filename.startswith(PACKAGE):
            return f"{Path(frame.f_code.co_filename).stem}:{frame.f_code.co_name}"
        frame = frame.f_back
    return "backward"


class OpCounter(TorchDispatchMode):
    """Counts the aten operations dispatched while active, by `site()` and by name."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: Counter[str] = Counter()
        self.names: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        where = site()
        self.sites[where] += 1
        phase = "backward" if where == "backward" else "forward"
        self.names[f"{phase}:{func.overloadpacket.__name__}"] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--variant", default="base")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    model_config, train_config = variant_configs(args.variant)
    torch.manual_seed(0)
    manifest, clip = load_clip(args.dataset, "train", size=model_config.output_resolution,
                               normalize_audio=model_config.audio.normalize, head_proxy=model_config.head_proxy)
    # as training does: the audio encoder reads the dataset's features
    model_config = replace(model_config, audio=replace(model_config.audio, feature_dim=manifest.audio.dim))
    model = TriplaneTalker(model_config)
    if model.lips is not None:
        model.lips.fit(clip.mouth_shapes)
    positions = torch.randint(len(clip), (train_config.batch_size,))
    batch = make_batch(clip, positions, model_config.render_resolution)
    regression = ([lip_frames(clip, torch.randint(len(clip), (train_config.lip_batch,)))
                   for _ in range(model.lips.config.regressions)] if model.lips is not None else None)
    counter = OpCounter()
    with counter:
        output, delta = model(batch.cameras, batch.conditions, mouth_shape=batch.mouth_shape,
                              lower_face=batch.lower_face, plate_warp=batch.plate_warp)
        terms = model.loss_terms(output, delta, batch, None, lip_frames=regression)
        forward = sum(counter.sites.values())
        sum(terms.values()).backward()
    total = sum(counter.sites.values())
    print(f"{args.variant}: {forward} forward operations, {total - forward} backward, batch {train_config.batch_size}")
    print("forward operations by site")
    for where, count in counter.sites.most_common(args.top):
        if where != "backward":
            print(f"  {count:6d}  {where}")
    print("operations by name")
    for name, count in counter.names.most_common(args.top):
        print(f"  {count:6d}  {name}")


if __name__ == "__main__":
    main()
