"""GPU profile of the rendering paths (issue 5; notes in docs/performance.md). Run after `deltaplane bench`:

    PYTHONPATH=src python3 scripts/gpu_render_profile.py [--frames 120] [--batch 1]

1. the device's two ceilings (bf16 matrix product, device-to-device copy);
2. per-stage times (CUDA events, median of replays) of the reference path (fp32, eager) and of the fast path
   (each stage captured as its own CUDA graph), plus the field alone (lookup + decoder MLP on every sample);
3. fast-path variants at one batch size (what each step buys): bf16 eager, + torch.compile, + CUDA graph.
Prints tables; writes $OUT/profile.json (or ./profile.json). A variant that fails prints its error and is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

from deltaplane.bench import REFERENCE, bench_inputs, format_report, random_weights_model, run_bench, synthetic_driving
from deltaplane.fastpath import FastRenderConfig, FastRenderer, sample_triplane_channels_last
from deltaplane.geometry.cameras import DEFAULT_FOCAL, Cameras, intrinsics_from_focal
from deltaplane.geometry.rays import pixel_rays
from deltaplane.render.volume import render_rays


def _median_ms(call: Callable[[], object], graph: bool, iters: int = 30) -> float:
    """Median milliseconds of `call`, replayed as a CUDA graph when `graph`."""
    if graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                call()
        torch.cuda.current_stream().wait_stream(side)
        captured = torch.cuda.CUDAGraph()
        with torch.cuda.graph(captured):
            call()
        call = captured.replay
    for _ in range(3):
        call()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        call()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def ceilings() -> dict[str, float]:
    size = 8192
    a, b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16), torch.randn(size, size, device="cuda",
                                                                                     dtype=torch.bfloat16)
    matmul_ms = _median_ms(lambda: a @ b, graph=False, iters=10)
    source = torch.randn(2**28, device="cuda")  # 1 GiB
    target = torch.empty_like(source)
    copy_ms = _median_ms(lambda: target.copy_(source), graph=False, iters=10)
    return {"bf16_matmul_tflops": 2 * size**3 / matmul_ms / 1e9, "copy_tb_per_s": 2 * source.nbytes / copy_ms / 1e9}


@torch.no_grad()
def reference_stages(model, batch: int) -> dict[str, float]:
    """The reference's three stages, fp32 eager, as `inference.render_clip` runs them."""
    device, config = model.identity_planes.device, model.config
    renderer = FastRenderer(model, batch, FastRenderConfig(precision="32-true", channels_last=False,
                                                           compile_mode="none", cuda_graph=False))
    codes, eye, angles, landmarks, cam2world, *_ = renderer.example_inputs()
    encoded = model.predictor.encode(model.identity_planes[None]).expand(batch)
    tokens = model.condition_encoder(codes, eye, angles, landmarks)
    planes, _ = model.planes(tokens, encoded_identity=encoded)
    size = config.output_resolution
    cameras = Cameras(cam2world, intrinsics_from_focal(DEFAULT_FOCAL, size, size, batch, device=device), size, size)
    origins, directions = pixel_rays(cameras.resized(config.render_resolution, config.render_resolution))
    generator = torch.Generator(device=device).manual_seed(0)
    features = torch.randn(batch, config.plane_channels, config.render_resolution, config.render_resolution,
                           device=device)
    return {"planes": _median_ms(lambda: model.planes(model.condition_encoder(codes, eye, angles, landmarks),
                                                      encoded_identity=encoded), graph=False),
            "volume": _median_ms(lambda: render_rays(lambda points: model.field(planes, points), origins, directions,
                                                     config.volume, generator=generator), graph=False),
            "superres": _median_ms(lambda: model.superres(features[:, :3], features), graph=False),
            "whole step": _median_ms(lambda: model.render(model.planes(model.condition_encoder(
                codes, eye, angles, landmarks), encoded_identity=encoded)[0], cameras, generator), graph=False)}


@torch.no_grad()
def fast_stages(model, batch: int) -> dict[str, float]:
    """The fast path's stages (compiled, bf16), each replayed as its own CUDA graph, and the field alone."""
    renderer = FastRenderer(model, batch, FastRenderConfig(cuda_graph=False))
    inputs = renderer.example_inputs()
    planes_stage, features_stage, superres_stage = renderer.stages
    planes = planes_stage(*inputs[:4])
    feature_image, _ = features_stage(planes, *inputs[4:])
    volume, cam2world = model.config.volume, inputs[4]
    directions = renderer.camera_directions @ cam2world[:, :3, :3].transpose(-1, -2)  # [B, R, 3]
    samples = volume.num_coarse + volume.num_importance
    depths = torch.linspace(volume.near, volume.far, samples, device=planes.device)  # points along the real rays
    points = cam2world[:, None, None, :3, 3] + depths[:, None] * directions[:, :, None]  # [B, R, S, 3]
    points = points.reshape(batch, -1, 3)
    decoder, box_warp = renderer.model.field.decoder, renderer.model.field.box_warp

    def field(planes_cl: torch.Tensor, points_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            return decoder(sample_triplane_channels_last(planes_cl, points_, box_warp))

    field_compiled = torch.compile(field, dynamic=False)
    return {"planes": _median_ms(lambda: planes_stage(*inputs[:4]), graph=True),
            "volume": _median_ms(lambda: features_stage(planes, *inputs[4:]), graph=True),
            "superres": _median_ms(lambda: superres_stage(feature_image), graph=True),
            "field only (all samples)": _median_ms(lambda: field_compiled(planes, points), graph=True),
            "whole step": _median_ms(lambda: renderer._step(*inputs), graph=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--preset", default="fast")
    args = parser.parse_args()
    device = torch.device("cuda")
    torch._dynamo.config.recompile_limit = 64  # one entry per renderer instance and batch size
    results: dict[str, object] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    results["ceilings"] = ceilings()
    print("ceilings:", {k: round(v, 1) for k, v in results["ceilings"].items()}, flush=True)
    model = random_weights_model(args.preset, device)
    for batch in sorted({1, args.batch, 4}):
        for name, stages in (("reference", reference_stages), ("fast", fast_stages)):
            key = f"stages_ms/{name}/batch{batch}"
            try:
                results[key] = stages(model, batch)
            except Exception:  # noqa: BLE001 -- report and go on: one call of device time must give all it can
                traceback.print_exc()
                continue
            print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)
    conditions, cam2world = bench_inputs(model, synthetic_driving(args.frames), args.frames)
    variants = {"bf16-eager": FastRenderConfig(compile_mode="none", cuda_graph=False),
                "bf16-compiled": FastRenderConfig(cuda_graph=False),
                "bf16-cmp+graph": FastRenderConfig()}
    rows = []
    for name, config in variants.items():
        started = time.perf_counter()
        try:
            report = run_bench(model, conditions, cam2world, (args.batch,), {name: config}, f"preset {args.preset}")
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            continue
        rows.extend(r for r in report.results if r.path != REFERENCE or not rows)
        print(f"{name}: {time.perf_counter() - started:.0f} s", format_report(report).splitlines()[-1], flush=True)
    if rows:
        results["variants"] = [dataclasses.asdict(r) for r in rows]
        print(format_report(dataclasses.replace(report, results=tuple(rows))))
    out = Path(os.environ.get("OUT", "."))
    (out / "profile.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
