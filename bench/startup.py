#!/usr/bin/env python3
"""Benchmark: how fast ``mkdoctor --help`` and ``--version`` start.

Target (issue 2): ``mkdoctor --help`` in under 150 ms on the project's 2-core machine.
Runs the installed console script (or ``python -m mkdoctor`` with --module) N times and
reports the median and the best; exits 1 when the median misses the target. This is a
benchmark, not a test: run it by hand or in a performance job, not in the unit suite.

    python bench/startup.py [--runs 20] [--target-ms 150] [--module]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(argv: list[str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--target-ms", type=float, default=150.0)
    p.add_argument("--module", action="store_true", help="run python -m mkdoctor instead of the script")
    args = p.parse_args()
    script = shutil.which("mkdoctor")
    if args.module or not script:
        base = [sys.executable, "-m", "mkdoctor"]
        os.environ["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    else:
        base = [script]
    worst = 0.0
    for flag in ("--help", "--version"):
        measure(base + [flag], 2)  # warm the page cache
        t = measure(base + [flag], args.runs)
        med = statistics.median(t)
        worst = max(worst, med)
        label = "python -m mkdoctor" if len(base) > 1 else "mkdoctor"
        print(f"{label} {flag}: median {med:.1f} ms, "
              f"best {min(t):.1f} ms over {args.runs} runs (target {args.target_ms:.0f} ms)")
    return 0 if worst <= args.target_ms else 1


if __name__ == "__main__":
    sys.exit(main())
