"""A compact table of scripts/score_lip_renders.py's JSON, one block per scored run: the test renders (PSNR / face,
LMD, opening spread and mean ratios, open fraction against the ground truth's, sync and offset, sharpness, detail
gain, eyes' PSNR / brightness bias, blinks (eye openness spread ratio / correlation), mouth's PSNR / brightness
bias, opening in the pauses and in the speech, dark specks in the torso band), the run's steps, regression fit and
driving vectors' opening spread (gpu_lip_motion.py's diagnostics, since run 49), the random ray samples' own noise
(`gpu_lip_motion.py --sampling`), each cross-driven prefix (spread range, files in issue 9's 0.7–1.4 band, sync
floor and mean, offsets, then one line per file) and the novel views (identity distance, sharpness against the
frontal render, frames without a face).

    python scripts/lip_table.py score.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from score_lip_renders import RENDERS, cross_prefixes

from deltaplane.evaluation.run import MOUTH_BANDS


def test_line(name: str, row: dict) -> str:
    """One test render's scores ('-' where a score is missing)."""
    def get(key: str, spec: str = ".2f") -> str:
        value = row.get(f"{name}/{key}")
        return "-" if value is None else format(value, spec)
    return (f"{name:22s} psnr {get('psnr')}/{get('psnr_face')} lmd {get('lmd')} [offset {get('lmd_offset')} motion "
            f"{get('lmd_motion')}] std {get('mouth/opening_std_ratio')} "
            f"mean {get('mouth/opening_mean_ratio')} open {get('mouth/open_fraction')}/"
            f"{get('mouth/open_fraction_reference')} sync {get('sync/correlation')} ({get('sync/offset_frames', 'd')}) "
            f"sharp {get('sharpness_ratio')} gain {get('detail_gain_1')}/{get('detail_gain_2')} "
            f"eyes {get('psnr_eyes')}/{get('bias_eyes', '+.1f')} blinks {get('eyes/openness_std_ratio')}/"
            f"{get('eyes/openness_correlation')} mouth {get('psnr_mouth')}/{get('bias_mouth', '+.1f')} "
            f"pause/speech {get('mouth/pause_opening_ratio')}/{get('mouth/speech_opening_ratio')} "
            f"torso {get('psnr_torso')}/{get('bias_torso', '+.1f')} specks {get('torso_speckle', '.5f')}")


def block(row: dict) -> list[str]:
    """The lines of one scored run."""
    settings = sorted({key.split("/")[0] for key in row if key.startswith(("test_snap", "test_mouthx"))})
    lines = [test_line(name, row) for name in (*RENDERS, *settings) if f"{name}/psnr" in row]
    if "test/gt/sync/correlation" in row:
        lines.append(f"ground truth sync {row['test/gt/sync/correlation']:.2f} ({row['test/gt/sync/offset_frames']}) "
                     f"torso specks {row.get('test/gt/torso_speckle', float('nan')):.5f}")
    if "lips/audio/opening_std_ratio" in row:  # gpu_lip_motion's diagnostics since run 49: render over these
        lines.append(f"{row['steps']} steps, regression corr {row['test/lip_correlation']:.2f}; the driving vectors' "
                     f"opening std {row['lips/audio/opening_std_ratio']:.2f} (unsnapped "
                     f"{row['lips/audio_unsnapped/opening_std_ratio']:.2f}, tracked snapped "
                     f"{row['lips/tracked_snapped/opening_std_ratio']:.2f})")
    if "sampling/noise_mean" in row:
        lines.append(f"random samples: two seeds differ by {row['sampling/noise_mean']:.2f} grey levels on average, "
                     f"{row['sampling/speckle_share']:.5f} of the pixels by more than 32")
    for prefix in cross_prefixes(key.split("/")[0] for key in row):
        names = sorted({key.split("/")[1] for key in row if key.startswith(f"{prefix}/")  # with a mouth found
                        and key.endswith("/mouth/opening_std_ratio")})
        if not names:
            continue
        spread = [row[f"{prefix}/{name}/mouth/opening_std_ratio"] for name in names]
        sync = [row[f"{prefix}/{name}/sync/correlation"] for name in names]
        offsets = [row[f"{prefix}/{name}/sync/offset_frames"] for name in names]
        low, high = MOUTH_BANDS["cross"]
        inside = sum(low <= value <= high for value in spread)
        lines.append(f"{prefix}: spread {min(spread):.2f}–{max(spread):.2f}, {inside} of {len(names)} in the band; "
                     f"sync min {min(sync):.2f} mean {sum(sync) / len(sync):.2f}; offsets {offsets}")
        lines += [f"   {name:20s} spread {value:.2f} sync {correlation:.2f} ({offset})"
                  for name, value, correlation, offset in zip(names, spread, sync, offsets)]
    for name in sorted({key.split("/")[1] for key in row if key.startswith("view/")}):
        identity, sharpness = (row.get(f"view/{name}/{key}", float("nan"))  # nan: no face found
                               for key in ("id_distance", "sharpness_ratio"))
        lines.append(f"view {name:9s} identity {identity:.3f} sharpness {sharpness:.2f} "
                     f"without a face {row[f'view/{name}/faces/missing']} "
                     f"detected {row.get(f'view/{name}/faces/detected', float('nan')):.2f} "
                     f"mesh offset / shape {row.get(f'view/{name}/mesh/offset', float('nan')):.3f} / "
                     f"{row.get(f'view/{name}/mesh/shape', float('nan')):.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scores", type=Path, help="score_lip_renders.py's output")
    args = parser.parse_args()
    for run, row in json.loads(args.scores.read_text()).items():
        print(f"== {run}")
        print("\n".join(block(row)))


if __name__ == "__main__":
    main()
