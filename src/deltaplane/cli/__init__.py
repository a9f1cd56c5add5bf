"""The `deltaplane` console script: one subcommand per `deltaplane.api` function.

Argument parsing only; every subcommand calls the API function of the same name. User errors (DeltaplaneError) print
one line and exit with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from deltaplane.errors import DeltaplaneError

PRESET_CHOICES = ("tiny", "fast", "full")
CAMERA_HELP = ("camera path: dataset (the training video's poses), front, yaw=DEG,pitch=DEG, "
               "orbit (Talk3D ±30° yaw / ±20° pitch ellipse) or spiral")


def _add_preprocess(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="turn a talking-portrait video into a training dataset",
                       description="Decode, track the face, align (VIVE3D-style), estimate head pose, make masks and "
                                   "frame-aligned audio features. Re-running resumes finished stages.")
    p.add_argument("video", type=Path, help="input video (any container/codec FFmpeg reads)")
    p.add_argument("-o", "--output", type=Path, required=True, help="dataset directory to write")
    p.add_argument("--audio", type=Path, help="audio file to use instead of the video's own audio stream")
    p.add_argument("--fps", type=float, default=25.0, help="output frame rate (default 25)")
    p.add_argument("--size", type=int, default=512, help="aligned frame size in pixels (default 512)")
    p.add_argument("--test-fraction", type=float, default=0.1, help="last fraction of the video kept for testing")
    p.add_argument("--audio-features", default="logmel",
                   help="'logmel' (default), a local wav2vec2/HuBERT model directory, or a precomputed AD-NeRF/"
                        "Talk3D .npy (aud_eo.npy or DeepSpeech aud.npy)")
    p.add_argument("--phones", action="store_true", help="also store a pocketsphinx phone track (needs [audio] extra)")
    p.add_argument("--av-offset", default="auto",
                   help="'auto' (default): measure how far the sound is off the lips and shift it onto them when "
                        "clear; a whole number of frames to shift by instead (positive: the mouth moves after the "
                        "sound); 0 keeps the audio as it is")
    p.add_argument("--align-smoothing", type=float, default=0.5,
                   help="σ in frames of the temporal smoothing of the landmarks that align each frame (default "
                        "0.5; Talk3D's 2 leaves the head's fast motion in the frames and blurs what is trained)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_scene(p: argparse.ArgumentParser) -> None:
    p.add_argument("--background", choices=("field", "plate", "fill"), default=None,
                   help="field: Talk3D's whole frame volume-rendered (the presets' default); plate: the person over "
                        "a static background plate recovered from the video, clean from any camera "
                        "(docs/background.md; trains on the GPU, but the audio still moves the torso with it); "
                        "fill: the whole frame, with the plate where side views see past the field: a clean, "
                        "still backdrop and no ghost faces at side views (BENCHMARKS.md runs 40-46; add "
                        "--head-proxy, or the head's far side can be lost at yaw 30 degrees)")
    p.add_argument("--head-proxy", action="store_true", default=None,
                   help="the depth terms also shape hair and ears on an ellipsoid fitted to the head, so that side "
                        "views meet a round head (docs/novel-views.md \"The head proxy\"; with --background fill it "
                        "kept obama_20s's turned face in 72-96 %% of frames; it cost the mouth 0.9-1.6 dB)")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a talking portrait on a preprocessed dataset")
    p.add_argument("dataset", type=Path, help="dataset directory made by `deltaplane preprocess`")
    p.add_argument("-o", "--output", type=Path, required=True, help="run directory (checkpoints, logs, samples)")
    p.add_argument("--preset", choices=PRESET_CHOICES, default=None,
                   help="model/training size: tiny (CPU tests), fast (minutes on a GPU), full (Talk3D size); "
                        "default: fast on CUDA, tiny on CPU")
    p.add_argument("--steps", type=int, help="number of training steps (default: the preset's)")
    p.add_argument("--minutes", type=float, help="stop after this many minutes of training (checkpoint kept)")
    p.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    p.add_argument("--compile", action="store_true",
                   help="compile the training step with torch.compile (fewer host operations a step; the first "
                        "step compiles for minutes; needs a C++ compiler on the CPU)")
    p.add_argument("--lip-prefit", type=int, metavar="STEPS",
                   help="fit the audio -> lip regressions alone for at most STEPS steps before the renderer's "
                        "first (fast preset, a new run; 6-13 s on an H100), stopping once the held-out "
                        "blocks stop improving and undone unless it lowered their error by a fifth (log.jsonl's "
                        "lip_prefit/*; not run on a clip under about 10 s, which has no such block); 0: none; "
                        "default: the preset's (fast: 3000)")
    _add_scene(p)
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--lpips-weights", type=Path, help="LPIPS weights file (never downloaded)")
    p.add_argument("--syncnet", type=Path, help="lip-sync expert weights for the sync loss (never downloaded)")
    p.add_argument("--tensorboard", action="store_true", help="also log to TensorBoard (needs tensorboard)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_render(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a trained portrait driven by any speech audio")
    p.add_argument("run", type=Path, help="run directory made by `deltaplane train`")
    p.add_argument("--audio", type=Path, required=True, help="driving speech (wav/mp3/m4a/..., any rate)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output mp4 (H.264 + AAC)")
    p.add_argument("--camera", default="dataset", help=CAMERA_HELP)
    p.add_argument("--depth", type=Path, help="also write a depth video here")
    p.add_argument("--neutral", action="store_true",
                   help="hold eye/angle/landmark tokens neutral instead of replaying the training video's")
    p.add_argument("--lip-smoothing", type=float, default=0.0,
                   help="EMA weight of the previous audio code (Talk3D uses 0.2; 0 = off)")
    p.add_argument("--no-watermark", action="store_true", help="do not embed the invisible watermark")
    p.add_argument("--mouth-x-blur", type=float, metavar="SIGMA",
                   help="blur the xy plane's texels along x in the mouth box by a Gaussian of SIGMA texels (2: no "
                        "specks between closed lips, but no teeth either; 0 = off; default: the run's)")
    p.add_argument("--mouth-scale", type=float, metavar="FACTOR",
                   help="how far the mouth moves with the audio, as a factor on the run's calibrated lip gain (1.3: "
                        "30 %% wider, within the training video's mouths; fast preset runs; default 1)")
    p.add_argument("--engine", choices=("auto", "reference", "fast"), default="auto",
                   help="rendering path: fp32 reference, or fast (bf16, compiled, CUDA graphs; ~1 min to compile); "
                        "auto = fast on CUDA for clips of 100 s or more")
    p.add_argument("--attention", type=Path, metavar="DIR",
                   help="also write the deltaplane's per-token attention maps (PNG sheets + attention.npz) here")
    p.add_argument("--attention-every", type=int, default=25, metavar="K", help="maps of every K-th frame")
    p.add_argument("--paste-back", action="store_true",
                   help="paste each rendered head and neck back into the original video frame it replays (original "
                        "size and background; --camera dataset only)")
    p.add_argument("--source", type=Path, metavar="VIDEO",
                   help="with --paste-back: the original video, if it is no longer where the dataset recorded it")
    p.add_argument("--dataset", type=Path, metavar="DIR",
                   help="with --paste-back: the run's dataset, if it is no longer where training read it")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true")


def _add_detect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="check a video for deltaplane's invisible watermark",
                       description="Exit status: 0 = watermark found, 1 = not found, 2 = the file cannot be read.")
    p.add_argument("video", type=Path)


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="preprocess + train + render (+ evaluate) in one go")
    p.add_argument("video", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="work directory")
    p.add_argument("--audio", type=Path, help="driving audio for the final renders (default: the clip's own audio)")
    p.add_argument("--preset", choices=PRESET_CHOICES, default=None)
    p.add_argument("--steps", type=int)
    p.add_argument("--no-evaluate", action="store_true", help="skip the final evaluation (metrics + report)")
    _add_scene(p)
    p.add_argument("--device")
    p.add_argument("--quiet", action="store_true")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="fully offline smoke run on a synthetic subject (a few minutes on a CPU)")
    p.add_argument("-o", "--output", type=Path, required=True, help="work directory")
    p.add_argument("--steps", type=int, help="training steps (default: the tiny preset's)")
    p.add_argument("--device")
    p.add_argument("--quiet", action="store_true")


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time the fp32 reference and the fast rendering path side by side",
                       description="Render the same clip with the plain fp32 reference path and the fast path "
                                   "(bf16, torch.compile, CUDA graph on a GPU; plain fp32 on CPU) at each batch "
                                   "size; print frames/s, p50/p99 per-frame latency, peak memory, the speed ratio "
                                   "and the max abs difference of their frames.")
    p.add_argument("run", type=Path, nargs="?", help="run directory made by `deltaplane train` (or --random-weights)")
    p.add_argument("--batch", type=_batch_sizes, default=(1, 4), help="comma-separated batch sizes (default 1,4)")
    p.add_argument("--frames", type=int, default=120, help="frames rendered per path and batch size (default 120)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--preset", choices=PRESET_CHOICES, default="fast",
                   help="model size with --random-weights (default fast)")
    p.add_argument("--random-weights", action="store_true",
                   help="bench a preset-sized model with random weights instead of a run (speed does not depend "
                        "on the weights)")
    p.add_argument("--background", choices=("field", "plate"), default="field",
                   help="with --random-weights: the whole-frame field (default) or the person over a background "
                        "plate (TriplaneTalkerConfig.background; 'fill' renders as 'plate' does)")
    p.add_argument("--torso", action="store_true",
                   help="with --random-weights: a torso of its own (TriplaneTalkerConfig.torso_follow)")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score a trained run, or any video against a ground truth",
                       description="Write metrics.json (flat keys; see deltaplane.evaluation.keys) and a "
                                   "self-contained report.html. With RUN: render the dataset split with its own "
                                   "audio and cameras and compare with its frames (test/...), render it from other "
                                   "views (view/NAME/...) and optionally with other audio (cross/NAME/...), saving each "
                                   "rendered view as videos/NAME.mp4. With --pred and --gt: compare two videos. "
                                   "Metrics needing weights are skipped unless given.")
    p.add_argument("run", type=Path, nargs="?", help="run directory made by `deltaplane train`")
    p.add_argument("--pred", type=Path, help="a video to score instead of a run (any system's output)")
    p.add_argument("--gt", type=Path, help="the ground-truth video for --pred")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="directory for metrics.json, report.html and (with RUN) videos/")
    p.add_argument("--dataset", type=Path, help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--split", default="test", help="dataset split to render and compare (default test)")
    p.add_argument("--audio", type=Path, help="with RUN: also render this speech file, or every audio file of this "
                                              "folder (cross/NAME/...: mouth motion, sync, identity); with --pred: "
                                              "audio for the sync score instead of the video's own")
    p.add_argument("--views", help="camera views with RUN, comma-separated: dataset, front, orbit, spiral, "
                                   "yaw=±DEG, pitch=±DEG (default dataset,front,yaw=±30,pitch=±20,spiral)")
    p.add_argument("--identity-every", type=int, default=10,
                   help="run the identity descriptor (~95 ms per face) on every k-th frame (default 10)")
    p.add_argument("--lpips-weights", type=Path, help="LPIPS weights file or directory (never downloaded)")
    p.add_argument("--lpips-every", type=int, default=1,
                   help="run LPIPS on every k-th frame (default 1; ~0.5-1 s per 512² frame on a 2-core CPU)")
    p.add_argument("--syncnet-v2", type=Path, help="syncnet_python's syncnet_v2.model for LSE-C/LSE-D")
    p.add_argument("--inception", type=Path,
                   help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth for FID (never downloaded)")
    p.add_argument("--fid-every", type=int, default=1,
                   help="feed every k-th frame to the FID Inception network (default 1; ~0.15 s per frame on a 2-core "
                        "CPU); FID is biased below ~2048 frames")
    p.add_argument("--arcface", type=Path,
                   help="insightface arcface_torch backbone.pth (IResNet 18/34/50/100) for id_arcface")
    p.add_argument("--no-videos", action="store_true", help="with RUN: do not save the rendered views as mp4")
    p.add_argument("--mouth-x-blur", type=float, metavar="SIGMA",
                   help="with RUN: render with the mouth's texels blurred along x, as `render --mouth-x-blur`")
    p.add_argument("--mouth-scale", type=float, metavar="FACTOR",
                   help="with RUN: render with the mouth moving FACTOR times as far, as `render --mouth-scale`")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deltaplane", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for add in (_add_preprocess, _add_train, _add_render, _add_detect, _add_run, _add_demo, _add_evaluate,
                _add_bench):
        add(sub)
    return parser


def _dispatch(args: argparse.Namespace) -> None:
    from deltaplane import api  # heavy imports only once a command runs

    if args.command == "preprocess":
        api.preprocess(args.video, args.output, audio=args.audio, fps=args.fps, size=args.size,
                       test_fraction=args.test_fraction, audio_features=args.audio_features, phones=args.phones,
                       av_offset=args.av_offset, align_smoothing=args.align_smoothing, progress=not args.quiet)
    elif args.command == "train":
        api.train(args.dataset, args.output, preset=args.preset, steps=args.steps, minutes=args.minutes,
                  resume=args.resume, device=args.device, lpips_weights=args.lpips_weights, syncnet=args.syncnet,
                  tensorboard=args.tensorboard, seed=args.seed, progress=not args.quiet, background=args.background,
                  head_proxy=args.head_proxy, compile=args.compile, lip_prefit=args.lip_prefit)
    elif args.command == "render":
        api.render(args.run, args.audio, args.output, camera=args.camera, depth=args.depth, neutral=args.neutral,
                   lip_smoothing=args.lip_smoothing, watermark=not args.no_watermark, device=args.device,
                   progress=not args.quiet, engine=args.engine, attention=args.attention,
                   attention_every=args.attention_every, paste_back=args.paste_back, source=args.source,
                   dataset=args.dataset, mouth_x_blur=args.mouth_x_blur, mouth_scale=args.mouth_scale)
    elif args.command == "evaluate":
        api.evaluate(args.output, run=args.run, prediction=args.pred, target=args.gt, dataset=args.dataset,
                     split=args.split, audio=args.audio, views=args.views, identity_every=args.identity_every,
                     lpips_weights=args.lpips_weights, lpips_every=args.lpips_every, syncnet_v2=args.syncnet_v2,
                     inception=args.inception, fid_every=args.fid_every, arcface=args.arcface,
                     videos=not args.no_videos, device=args.device, progress=not args.quiet,
                     mouth_x_blur=args.mouth_x_blur, mouth_scale=args.mouth_scale)
        print(f"wrote {args.output / 'metrics.json'} and {args.output / 'report.html'}")
    elif args.command == "detect":
        result = api.detect(args.video)
        print(result.summary())
        if not result.detected:
            sys.exit(1)
    elif args.command == "run":
        api.run(args.video, args.output, audio=args.audio, preset=args.preset, steps=args.steps,
                device=args.device, progress=not args.quiet, evaluation=not args.no_evaluate,
                background=args.background, head_proxy=args.head_proxy)
    elif args.command == "demo":
        api.demo(args.output, steps=args.steps, device=args.device, progress=not args.quiet)
    elif args.command == "bench":
        from deltaplane.bench import format_report

        print(format_report(api.bench(args.run, batch=args.batch, frames=args.frames, device=args.device,
                                      preset=args.preset, random_weights=args.random_weights, json_path=args.json,
                                      background=args.background, torso=args.torso)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from deltaplane import __version__

        print(__version__)
        return
    if args.command is None:
        parser.print_help()
        sys.exit(2)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with _native_logs_silenced(getattr(args, "quiet", False)):
            _dispatch(args)
    except DeltaplaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished stages and checkpoints are kept; re-run to resume", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM (a `kill`, a job scheduler's time limit) unwinds like Ctrl-C, so that partial outputs are removed."""
    raise KeyboardInterrupt


def _writes_to_descriptor_2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # e.g. a captured stream
        return False


@contextlib.contextmanager
def _native_logs_silenced(quiet: bool) -> Iterator[None]:
    """--quiet: mediapipe, TensorFlow Lite and absl write their C++ log lines straight to file descriptor 2, where
    Python cannot filter them. Point that descriptor at /dev/null for the command and keep Python's own stderr
    (errors, warnings) on a duplicate of the original."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    original = sys.stderr
    if _writes_to_descriptor_2(original):
        sys.stderr = open(os.dup(saved), "w", buffering=1, encoding=original.encoding, errors="backslashreplace")
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        if sys.stderr is not original:
            sys.stderr.close()
            sys.stderr = original
        os.close(saved)
        os.close(devnull)
