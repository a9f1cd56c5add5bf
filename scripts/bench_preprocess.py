"""Preprocessing speed and memory, end to end (decode → track → align → masks → write), per clip.

    python scripts/bench_preprocess.py CLIP [CLIP ...]      # prints a table; numbers go to BENCHMARKS.md

Each clip runs in a fresh subprocess (so peak RSS is per clip) into a temporary dataset directory.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
from pathlib import Path
from deltaplane import api
from deltaplane.data.schema import read_manifest
started = time.perf_counter()
api.preprocess(Path(sys.argv[1]), Path(sys.argv[2]), progress=False)
seconds = time.perf_counter() - started
manifest = read_manifest(sys.argv[2])
print(json.dumps({"frames": manifest.num_frames, "seconds": seconds,
                  "stages": {k: v["seconds"] for k, v in manifest.stages.items()},
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    rows = []
    for clip in map(Path, sys.argv[1:]):
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run([sys.executable, "-c", CHILD, str(clip), str(Path(tmp) / "ds")],
                                    capture_output=True, text=True, check=True)
            record = json.loads(result.stdout.strip().splitlines()[-1])
        record.update(clip=clip.name, fps=record["frames"] / record["seconds"])
        rows.append(record)
    print(f"{'clip':<32} {'frames':>6} {'seconds':>8} {'frames/s':>9} {'peak RSS MiB':>13}  stages (s)")
    for r in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["stages"].items())
        print(f"{r['clip']:<32} {r['frames']:>6} {r['seconds']:>8.1f} {r['fps']:>9.1f} {r['peak_rss_mib']:>13.0f}  {stages}")
    print(f"cpu count {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} "
          f"(this process's own rss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB), "
          f"{time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
