#!/usr/bin/env python3
"""Benchmark: `mkdoctor setup` against a real sshd, over loopback and over a link with
50 ms round trips, in logins and wall time against the floor.

    sudo python bench/setup_bench.py [--runs 5] [--delay-ms 25] [--kernel-start-s 0]

The sandbox sshd of the test harness (root only: a private user) serves the stand-in
kernel (tests/standin_kernel.py; Mathematica cannot be installed here). For the slow
link a delaying TCP relay (bench/relay.py, ``--delay-ms`` each way, loopback only) sits
in front of sshd; there is no netem here. ``--kernel-start-s N`` makes every start of
the stand-in kernel wait N seconds first (its ``slow:N`` fault), like a real kernel's
start-up.

Per link, each of ``--runs`` runs is a fresh unattended setup (new profile directory,
new HOME, a fresh copy of the ssh config; the key is already authorized), direct mode:

- logins: "Accepted publickey" + "Accepted password" lines sshd logged during the run;
- wall time, against the floor: one login plus one kernel start, i.e. the median of
  ``ssh HOST KERNEL -noprompt -run 'Exit[]'`` (a fresh connection each time).

Prints the medians and the ratio; exits 1 when a setup logs in more than once or the
median ratio exceeds ``--target`` (default 1.5).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def logins(box) -> int:
    text = box.log_text()
    return text.count("Accepted publickey") + text.count("Accepted password")


def client_files(box, base: Path, port: int) -> Path:
    """An ssh config (and known_hosts) for the sandbox reached on ``port``."""
    keytype, blob = box.host_key_pub.read_text().split()[:2]
    kh = base / f"known_hosts_{port}"
    kh.write_text(f"[127.0.0.1]:{port} {keytype} {blob}\n")
    kh.chmod(0o600)
    cfg = base / f"ssh_config_{port}"
    cfg.write_text(f"Host sandbox\n    HostName 127.0.0.1\n    Port {port}\n    User {box.user}\n"
                   f"    IdentityFile {box.client_key}\n    IdentitiesOnly yes\n"
                   f"    UserKnownHostsFile {kh}\n    GlobalKnownHostsFile /dev/null\n"
                   "    StrictHostKeyChecking yes\n    UpdateHostKeys no\n")
    cfg.chmod(0o600)
    return cfg


def measure(box, base: Path, cfg: Path, kernel: Path, runs: int) -> dict:
    floor, setup, counts = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", "sandbox",
                               shlex.join([str(kernel), "-noprompt", "-run", "Exit[]"])],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        floor.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"floor command failed: {done.stderr.decode(errors='replace')}")
    for i in range(runs):
        run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=base))
        (run_dir / "home").mkdir()
        my_cfg = run_dir / "ssh_config"
        shutil.copyfile(cfg, my_cfg)
        env = dict(os.environ, MKDOCTOR_CONFIG_DIR=str(run_dir / "conf"), NO_COLOR="1",
                   HOME=str(run_dir / "home"), PYTHONPATH=str(ROOT))
        env.pop("CI", None)
        argv = [sys.executable, "-m", "mkdoctor", "setup", "--yes", "--offline",
                "--ssh-config", str(my_cfg), "--host", "sandbox", "--name", f"b{i}",
                "--mode", "direct", "--link-host", "127.0.0.1", "--kernel", str(kernel),
                "--identity", str(box.client_key)]
        before = logins(box)
        t0 = time.perf_counter()
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=300)
        setup.append(time.perf_counter() - t0)
        time.sleep(0.2)  # the last session's log line
        counts.append(logins(box) - before)
        if done.returncode != 0:
            raise SystemExit(f"setup failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    f, s = statistics.median(floor), statistics.median(setup)
    return {"floor": f, "setup": s, "ratio": s / f, "logins": sorted(set(counts))}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--delay-ms", type=float, default=25.0, help="one way (default 25: 50 ms round trips)")
    p.add_argument("--kernel-start-s", type=float, default=0.0)
    p.add_argument("--target", type=float, default=1.5)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("needs root (the sandbox sshd runs as a private user)", file=sys.stderr)
        return 2
    from relay import Relay
    from tests.harness.sshd import SSHSandbox

    base = Path(tempfile.mkdtemp(prefix="mkd-sbench-", dir="/tmp"))
    os.chmod(base, 0o755)
    ok = True
    try:
        with SSHSandbox(base / "sbx") as box:
            kernel = box.home / "Wolfram/Mathematica/14.1/Executables/WolframKernel"
            kernel.parent.mkdir(parents=True)
            shutil.copyfile(ROOT / "tests/standin_kernel.py", kernel)
            for path in (kernel, *kernel.parents):
                if path == box.home:
                    break
                path.chmod(0o755)
            subprocess.run(["chown", "-R", f"{box.uid}:{box.gid}", str(box.home / "Wolfram")],
                           check=True)
            if args.kernel_start_s:
                fault = box.home / ".standin-fault"
                fault.write_text(f"slow:{args.kernel_start_s:g}\n")
                fault.chmod(0o644)
            rows = [("loopback", 0.0)] + ([(f"{2 * args.delay_ms:g} ms round trips", args.delay_ms / 1000)]
                                          if args.delay_ms else [])
            print(f"mkdoctor setup benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                  f"{platform.node()} ({os.cpu_count()} cores, {platform.platform()}), "
                  f"{args.runs} runs each, kernel start +{args.kernel_start_s:g} s")
            for label, delay in rows:
                relay = Relay(box.port, delay) if delay else None
                try:
                    cfg = client_files(box, base, relay.port if relay else box.port)
                    r = measure(box, base, cfg, kernel, args.runs)
                finally:
                    if relay:
                        relay.close()
                print(f"  {label:<20} floor (1 login + 1 kernel start) {r['floor']:.2f} s; "
                      f"setup {r['setup']:.2f} s = {r['ratio']:.2f}x the floor "
                      f"(target {args.target:g}x); logins per setup: {r['logins']}")
                ok = ok and r["ratio"] <= args.target and r["logins"] == [1]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
