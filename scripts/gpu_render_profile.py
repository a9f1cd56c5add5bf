"""GPU profile of the rendering paths (issue 5; notes in docs/performance.md). Run after `deltaplane bench`:

    PYTHONPATH=src python3 scripts/gpu_render_profile.py [--frames 120] [--batches 1,4] [--parts ...]
        [--background plate]

--parts picks what runs (default all but `reference`):
* ceilings: the device's two ceilings (bf16 matrix product, device-to-device copy);
* reference / stages: per-stage times (CUDA events, median) of the reference path (fp32, eager) / of the fast path
  (each stage replayed as its own CUDA graph), plus the fast field alone (lookup + decoder MLP on every sample);
* kernels: the fast step's kernels by device time (torch.profiler);
* field_launch: the Triton field's kernel alone at each launch configuration (`triton_field.LAUNCH`);
* variants: what each step buys at one batch size: bf16 eager, + torch.compile, + Triton field, + CUDA graph.
Prints tables; writes $OUT/profile_BACKGROUND.json (or ./profile_BACKGROUND.json). A part that fails prints its error
and is skipped.
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
from deltaplane.fastpath import FastRenderConfig, FastRenderer, field_features_channels_last
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
    renderer = FastRenderer(model, batch, FastRenderConfig.for_device(torch.device("cpu")))  # for its inputs
    codes, eye, angles, landmarks, cam2world, *_ = renderer.example_inputs()
    encoded = model.encode_identity().expand(batch)
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
    """The fast path's stages (compiled, bf16), each replayed as its own CUDA graph, and its field alone on the
    samples of a whole batch (points spread along the real rays)."""
    renderer = FastRenderer(model, batch, FastRenderConfig.for_device(model.identity_planes.device))
    inputs = renderer.example_inputs()
    planes_stage, features_stage, superres_stage = renderer.stages
    planes = planes_stage(*inputs[:4])
    feature_image, _, alpha = features_stage(planes, *inputs[4:])
    points, weights = _field_inputs(renderer, inputs[4])
    box_warp = renderer.model.field.box_warp
    if renderer.config.field == "triton":
        def field() -> object:
            return torch.ops.deltaplane.triplane_field(planes, points, *weights, box_warp, renderer.confined)
    else:
        compiled = torch.compile(lambda planes_cl, points_: renderer.model.field.decoder(field_features_channels_last(
            planes_cl, points_, box_warp, renderer.confined)), dynamic=False)

        def field() -> object:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return compiled(planes, points)
    return {"planes": _median_ms(lambda: planes_stage(*inputs[:4]), graph=True),
            "volume": _median_ms(lambda: features_stage(planes, *inputs[4:]), graph=True),
            "superres": _median_ms(lambda: superres_stage(feature_image, alpha, *inputs[4:7]), graph=True),
            f"{renderer.config.field} field only (all samples)": _median_ms(field, graph=True),
            "whole step": _median_ms(lambda: renderer._step(*inputs), graph=True)}


def _field_inputs(renderer: FastRenderer, cam2world: torch.Tensor) -> tuple[torch.Tensor, tuple]:
    """Points [B, rays·samples, 3] spread evenly along the renderer's rays (ray-major, as the volume stage asks
    for them) and the decoder's weights."""
    volume = renderer.model.config.volume
    directions = renderer.camera_directions @ cam2world[:, :3, :3].transpose(-1, -2)  # [B, R, 3]
    samples = volume.num_coarse + volume.num_importance
    depths = torch.linspace(volume.near, volume.far, samples, device=cam2world.device)
    points = cam2world[:, None, None, :3, 3] + depths[:, None] * directions[:, :, None]  # [B, R, S, 3]
    mlp = renderer.model.field.decoder.net
    return points.reshape(cam2world.shape[0], -1, 3), (mlp[0].weight, mlp[0].bias, mlp[2].weight, mlp[2].bias)


@torch.no_grad()
def field_launches(model, batch: int) -> list[dict]:
    """The Triton field's kernel alone on a batch's samples at each launch configuration (points per program,
    warps, pipeline stages; `triton_field.LAUNCH` is the one in use): median ms of a graph replay and the largest
    difference from the default's outputs."""
    from deltaplane.triton_field import LAUNCH, launch_field  # imports Triton

    renderer = FastRenderer(model, batch, FastRenderConfig.for_device(model.identity_planes.device))
    inputs = renderer.example_inputs()
    planes = renderer.stages[0](*inputs[:4])
    points, weights = _field_inputs(renderer, inputs[4])
    box_warp = renderer.model.field.box_warp

    def run(launch: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return launch_field(planes, points, *weights, box_warp, renderer.confined, launch=launch)

    expected = torch.cat(run(LAUNCH), dim=-1)
    rows = []
    for launch in [(block, warps, stages) for block in (32, 64, 128, 256) for warps in (2, 4, 8)
                   for stages in (1, 2, 3)]:
        try:
            diff = (torch.cat(run(launch), dim=-1) - expected).abs().max().item()
            rows.append({"launch": launch, "ms": _median_ms(lambda launch=launch: run(launch), graph=True),
                         "max_diff": diff})
        except Exception as error:  # noqa: BLE001 -- a launch that does not fit (registers, shared memory) is skipped
            rows.append({"launch": launch, "error": str(error).splitlines()[0][:120]})
        print(rows[-1], flush=True)
    return rows


@torch.no_grad()
def top_kernels(model, batch: int, count: int = 18) -> str:
    """The fast step's kernels by total device time over 5 uncaptured steps (torch.profiler)."""
    renderer = FastRenderer(model, batch, dataclasses.replace(FastRenderConfig.for_device(torch.device("cuda")),
                                                              cuda_graph=False))
    inputs = renderer.example_inputs()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profiler:
        for _ in range(5):
            renderer._step(*inputs)
        torch.cuda.synchronize()
    return profiler.key_averages().table(sort_by="cuda_time_total", row_limit=count, max_name_column_width=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--batches", default="1,4", help="batch sizes of the stage breakdown; the first for the rest")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--background", choices=("field", "plate"), default="field",
                        help="the whole-frame field or the person over a background plate "
                             "(`bench.random_weights_model`)")
    parser.add_argument("--parts", default="ceilings,stages,kernels,variants",
                        help="comma-separated: ceilings, reference (its stages), stages, field_launch, kernels, "
                             "variants")
    args = parser.parse_args()
    parts, batches = set(args.parts.split(",")), [int(b) for b in args.batches.split(",")]
    device = torch.device("cuda")
    torch._dynamo.config.recompile_limit = 64  # one entry per renderer instance and batch size
    results: dict[str, object] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                  "background": args.background}
    if "ceilings" in parts:
        results["ceilings"] = ceilings()
        print("ceilings:", {k: round(v, 1) for k, v in results["ceilings"].items()}, flush=True)
    model = random_weights_model(args.preset, device, background=args.background)
    stage_sets = [("reference", reference_stages)] if "reference" in parts else []
    stage_sets += [("fast", fast_stages)] if "stages" in parts else []
    for batch in batches:
        for name, stages in stage_sets:
            key = f"stages_ms/{name}/batch{batch}"
            try:
                results[key] = stages(model, batch)
            except Exception:  # noqa: BLE001 -- report and go on: one call of device time must give all it can
                traceback.print_exc()
                continue
            print(key, {k: round(v, 3) for k, v in results[key].items()}, flush=True)
    if "field_launch" in parts:
        results["field_launch"] = field_launches(model, batches[0])
    if "kernels" in parts:
        results["kernels"] = top_kernels(model, batches[0])
        print(results["kernels"], flush=True)
    if "variants" in parts:
        results["variants"] = variants(model, args.frames, batches[0], args.preset)
    out = Path(os.environ.get("OUT", "."))
    (out / f"profile_{args.background}.json").write_text(json.dumps(results, indent=2))


def variants(model, num_frames: int, batch: int, preset: str) -> list[dict]:
    """What each step buys, at one batch size: bf16 eager (torch field), + torch.compile, + Triton field, + graph."""
    driving = synthetic_driving(num_frames, model.config.conditions.landmark_inputs)
    conditions, cam2world = bench_inputs(model, driving, num_frames)
    configs = {"bf16-eager": FastRenderConfig(compile_mode="none", field="torch", cuda_graph=False),
               "+compile": FastRenderConfig(field="torch", cuda_graph=False),
               "+triton": FastRenderConfig(cuda_graph=False),
               "+graph": FastRenderConfig()}
    rows, report = [], None
    for name, config in configs.items():
        started = time.perf_counter()
        try:
            report = run_bench(model, conditions, cam2world, (batch,), {name: config}, f"preset {preset}")
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            continue
        rows.extend(r for r in report.results if r.path != REFERENCE or not rows)
        print(f"{name}: {time.perf_counter() - started:.0f} s", format_report(report).splitlines()[-1], flush=True)
    if rows:
        print(format_report(dataclasses.replace(report, results=tuple(rows))), flush=True)
    return [dataclasses.asdict(r) for r in rows]


if __name__ == "__main__":
    main()
