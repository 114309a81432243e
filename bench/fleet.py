#!/usr/bin/env python3
"""Benchmark: many hosts at once, over loopback and over a link with 50 ms round trips.

Real sshd servers (the test harness's sandbox, root only), each in its own network
namespace and linked to a "laptop" namespace where mkdoctor runs, with the stand-in
kernel (tests/standin_kernel.py; Mathematica cannot be installed here) taking 2 s to start
(its ``slow:2`` fault). For the 50 ms case a delaying TCP relay (bench/relay.py; no
netem here) sits in front of every sshd. Scenarios, each the median of ``--runs``:

- floor: one ``ssh HOST`` that starts the kernel and waits for its answer;
- full: the whole catalogue against one host (tunnel mode, --offline);
- hosts N: N hosts (1, 5, 10, 20) with default options;
- bastion: 20 Host aliases behind one ProxyJump bastion;

and for each the client CPU (user+sys of mkdoctor and every program it ran) per host and
the peak memory of the largest process. Prints a Markdown table (for docs/performance.md)
and exits 1 when a target is missed: 20 hosts <= 1.5x one host; full run <= 1.2x the floor
at 50 ms.

    sudo python bench/fleet.py [--runs 5] [--hosts 1,5,10,20] [--delays 0,0.025]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
KERNEL = "/usr/local/Wolfram/Mathematica/14.1/Executables/WolframKernel"


def _child_usage() -> tuple[float, int]:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss


FAILED: list[str] = []  # what failed in a run that exited 1, one line each


def _timed(argv: list[str], env: dict) -> tuple[float, float, int, int]:
    """(wall s, cpu s, peak KiB, exit status) of one command and everything it ran."""
    cpu0, _ = _child_usage()
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True)
    wall = time.perf_counter() - t0
    cpu1, peak = _child_usage()
    if done.returncode == 1 and done.stdout.startswith("{"):
        data = json.loads(done.stdout)
        for r in data.get("reports", [data]):
            FAILED.extend(f"{(r.get('target') or {}).get('destination')}: {c['id']} {c['summary']}"
                          for c in r["checks"] if c["status"] in ("fail", "error"))
    return wall, cpu1 - cpu0, peak, done.returncode


def measure(spec_path: str) -> int:
    """Inside the laptop namespace: start the relays, run every scenario, print JSON."""
    from bench.relay import Relay

    spec = json.loads(Path(spec_path).read_text())
    # as an installed mkdoctor runs: with its bytecode cached (pip compiles it on install)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(NO_COLOR="1", MKDOCTOR_CONFIG_DIR=spec["cfgdir"], PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mkdoctor"),
                    str(ROOT / "checks"), str(ROOT / "wizard")], env=env, stdout=subprocess.DEVNULL)
    out = []
    for delay in spec["delays"]:
        relays = []
        lines = []
        try:
            for h in spec["hosts"]:
                addr, port = h["address"], h["port"]
                block = h["block"]
                if delay:
                    r = Relay(port, delay, to_host=addr)
                    relays.append(r)
                    # known_hosts names the sshd by its own address: the relay's must not
                    # make the key look unknown (host-key checking stays on)
                    first, _, rest = block.partition("\n")
                    block = f"{first}\n    HostKeyAlias [{addr}]:{port}\n{rest}"
                    addr, port = "127.0.0.1", r.port
                lines.append(block.replace("@ADDR@", addr).replace("@PORT@", str(port)))
            cfg = Path(spec["cfgdir"]) / f"ssh_config_{delay}"
            cfg.write_text("".join(lines) + spec["bastion_block"])
            mk = [sys.executable, "-m", "mkdoctor", "--ssh-config", str(cfg), "--offline",
                  "--mode", "tunnel", "--kernel", KERNEL, "--format", "json"]
            floor = shlex.join([KERNEL, "-noprompt", "-run", "Print[1+1];Exit[]"])
            scenarios = [("floor", ["ssh", "-F", str(cfg), "ws0", floor], 1),
                         ("full", mk + ["--host", "ws0"], 1)]
            for n in spec["counts"]:
                scenarios.append((f"hosts {n}", mk + [a for i in range(n) for a in ("--host", f"ws{i}")], n))
            if spec["bastion"]:
                scenarios.append(("bastion 20", mk + [a for i in range(20)
                                                      for a in ("--host", f"node{i:02d}")], 20))
            for name, argv, hosts in scenarios:
                _timed(argv, env)  # warm-up
                runs = [_timed(argv, env) for _ in range(spec["runs"])]
                out.append({"scenario": name, "rtt_ms": round(2000 * delay), "hosts": hosts,
                            "wall": [r[0] for r in runs], "cpu": [r[1] for r in runs],
                            "peak_kib": max(r[2] for r in runs),
                            "exit": sorted({r[3] for r in runs})})
        finally:
            for r in relays:
                r.close()
    for line in sorted(set(FAILED))[:20]:
        print("failed:", line, file=sys.stderr)
    print(json.dumps(out))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--hosts", default="1,5,10,20")
    p.add_argument("--delays", default="0,0.025", help="one-way delays in seconds")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.measure:
        return measure(args.measure)
    if os.geteuid() != 0:
        print("needs root (sshd sandboxes and network namespaces)", file=sys.stderr)
        return 2
    from tests.harness.netns import Netns, link
    from tests.harness.sshd import SSHSandbox
    from tests.test_kernel_checks import install_standin

    counts = [int(n) for n in args.hosts.split(",")]
    nhosts = max(counts + [1])
    base = Path(tempfile.mkdtemp(prefix="mkd-fleet-", dir="/tmp"))
    os.chmod(base, 0o755)
    kernels = base / "wolfram"
    install_standin(kernels, "Mathematica/14.1/Executables/WolframKernel")
    (base / "cfg").mkdir()
    netns, boxes = [], []
    try:
        laptop = Netns("mkbl").create()
        netns.append(laptop)
        hosts = []
        for i in range(nhosts):
            ws = Netns("mkbw").create()
            netns.append(ws)
            link(laptop, ws, f"10.78.{i}.1/24", f"10.78.{i}.2/24")
            box = SSHSandbox(base / f"sbx{i}", netns=ws.name, address=f"10.78.{i}.2",
                             bind_mounts={"/usr/local/Wolfram": kernels}).start()
            boxes.append(box)
            (box.home / ".standin-fault").write_text("slow:2\n")
            block = box.client_config.read_text().replace(f"Host {box.alias}\n", f"Host ws{i}\n", 1)
            block = block.replace(f"HostName {box.address}", "HostName @ADDR@").replace(
                f"Port {box.port}", "Port @PORT@")
            hosts.append({"address": box.address, "port": box.port, "block": block})
        # 20 aliases behind ws0 as the bastion: each node is ws0's sshd reached from the
        # bastion itself (its own address), the bastion over the link (the relay when delayed)
        hosts.append({**hosts[0], "block": hosts[0]["block"].replace("Host ws0\n", "Host bastion\n", 1)})
        bastion = "".join(
            boxes[0].client_config.read_text().replace(f"Host {boxes[0].alias}\n",
                                                       f"Host node{i:02d}\n", 1)
            + "    ProxyJump bastion\n" for i in range(20))
        spec = {"hosts": hosts, "bastion_block": bastion, "bastion": True,
                "counts": counts, "delays": [float(d) for d in args.delays.split(",")],
                "runs": args.runs, "cfgdir": str(base / "cfg")}
        (base / "spec.json").write_text(json.dumps(spec))
        done = subprocess.run(["ip", "netns", "exec", laptop.name, sys.executable, __file__,
                               "--measure", str(base / "spec.json")],
                              capture_output=True, text=True, cwd=str(ROOT))
        print(done.stderr, file=sys.stderr, end="")
        if done.returncode != 0:
            return 1
        rows = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        for box in boxes:
            box.stop()
        for ns in netns:
            ns.delete()
        shutil.rmtree(base, ignore_errors=True)
    return report(rows, args.runs)


def report(rows: list[dict], runs: int) -> int:
    med = {(r["scenario"], r["rtt_ms"]): statistics.median(r["wall"]) for r in rows}
    print(f"| scenario | round trip | hosts | wall median (min-max) s | client CPU per host s "
          f"| peak MiB | exit |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        w = r["wall"]
        print(f"| {r['scenario']} | {r['rtt_ms']} ms | {r['hosts']} | {statistics.median(w):.2f} "
              f"({min(w):.2f}-{max(w):.2f}) | {statistics.median(r['cpu']) / r['hosts']:.2f} | "
              f"{r['peak_kib'] / 1024:.0f} | {','.join(map(str, r['exit']))} |")
    ok = True
    for rtt in sorted({r["rtt_ms"] for r in rows}):
        one, twenty = med.get(("hosts 1", rtt)), med.get(("hosts 20", rtt))
        if one and twenty:
            ratio = twenty / one
            print(f"\n{rtt} ms: 20 hosts / 1 host = {ratio:.2f} (target <= 1.5)")
            ok &= ratio <= 1.5
        floor, full = med.get(("floor", rtt)), med.get(("full", rtt))
        if floor and full:
            print(f"{rtt} ms: full run / floor = {full / floor:.2f} (target <= 1.2 at 50 ms)")
            if rtt == 50:
                ok &= full / floor <= 1.2
    print(f"\n(medians of {runs} runs after one warm-up)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
