#!/usr/bin/env python3
"""Benchmark: a whole `mkdoctor` run against a real sshd on loopback.

Starts the test harness's sandbox sshd (root only: it needs a private user) with the
stand-in kernel laid out in a standard install path, then runs the full catalogue
(``--offline``, tunnel mode) N times and reports the median wall time and the number of
SSH authentications per run (the design target: exactly one, whatever the number of
remote checks; the checks run concurrently where they do not depend on each other).

    sudo python bench/remote_run.py [--runs 5] [--target-s 3]

Exits 1 when a run authenticates more than once or the median misses the target.
The same-machine sandbox shares this computer's network stack, so MK403/MK404 skip
(a reverse forward cannot be told from a local connection there).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--target-s", type=float, default=3.0)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (the sandbox sshd runs as a private user)", file=sys.stderr)
        return 2
    from tests.harness.sshd import SSHSandbox

    base = Path(tempfile.mkdtemp(prefix="mkd-bench-", dir="/tmp"))
    os.chmod(base, 0o755)
    kernels = base / "wolfram"
    kernel = kernels / "Mathematica/14.1/Executables/WolframKernel"
    kernel.parent.mkdir(parents=True)
    shutil.copyfile(ROOT / "tests/standin_kernel.py", kernel)
    for path in (kernel, *kernel.parents):
        if path == base:
            break
        path.chmod(0o755)
    env = dict(os.environ, MKDOCTOR_CONFIG_DIR=str(base / "cfg"), NO_COLOR="1",
               PYTHONPATH=str(ROOT))
    times, logins = [], []
    try:
        with SSHSandbox(base / "sbx", bind_mounts={"/usr/local/Wolfram": kernels}) as box:
            argv = [sys.executable, "-m", "mkdoctor", "--ssh-config", str(box.client_config),
                    "--host", box.alias, "--offline", "--mode", "tunnel", "--format", "json"]
            for _ in range(args.runs):
                before = box.accepted_count()
                t0 = time.perf_counter()
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times.append(time.perf_counter() - t0)
                logins.append(box.accepted_count() - before)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    med = statistics.median(times)
    print(f"full catalogue against a loopback sshd: median {med:.2f} s, best {min(times):.2f} s "
          f"over {args.runs} runs (target {args.target_s:g} s); "
          f"SSH authentications per run: {sorted(set(logins))}")
    return 0 if med <= args.target_s and set(logins) == {1} else 1


if __name__ == "__main__":
    sys.exit(main())
