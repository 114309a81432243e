"""Every benchmark, one after the other: ``sudo .venv/bin/python -m bench [--runs N]``.

Runs bench/startup.py, bench/remote_run.py, bench/setup_bench.py (with a 2 s kernel start
and with an instant one), bench/fleet.py (1, 5, 10 and 20 hosts) and bench/unreachable.py
(steps that meet a silent or unreachable server), each as its own
program so that one's failure does not stop the others; prints each one's report and, at
the end, which met its target. Exits 1 when one did not. Needs root (sshd sandboxes and
network namespaces) for all but the first; takes about 26 minutes with the default runs.
Results go into docs/performance.md by hand, with their date.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs per scenario (default 5)")
    args = p.parse_args()
    runs = str(args.runs)
    # (title, argv, whether its target counts): setup with an instant kernel shows the fixed
    # costs alone; the 1.5x target is for a kernel that takes time to start
    jobs = [
        ("startup", ["startup.py", "--module"], True),
        ("one run against a loopback sshd", ["remote_run.py"], True),
        ("setup, kernel start +2 s", ["setup_bench.py", "--runs", runs, "--kernel-start-s", "2"], True),
        ("setup, instant kernel (fixed costs; no target)", ["setup_bench.py", "--runs", runs], False),
        ("many hosts", ["fleet.py", "--runs", runs, "--hosts", "1,5,10,20"], True),
        ("unreachable steps", ["unreachable.py", "--runs", runs], True),
    ]
    verdicts = []
    for title, argv, counts in jobs:
        print(f"\n== {title}: python bench/{' '.join(argv)}", flush=True)
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]])
        verdicts.append((title, done.returncode, counts, time.monotonic() - started))
    print("\n== summary")
    for title, rc, counts, took in verdicts:
        said = ({0: "target met", 1: "target missed"}.get(rc, f"could not run (exit {rc})")
                if counts or rc not in (0, 1) else "ran")
        print(f"  {title}: {said} ({took:.0f} s)")
    return 0 if all(rc == 0 or (not counts and rc == 1) for _, rc, counts, _ in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
