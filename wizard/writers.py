"""Every file the wizard writes: planned first, shown, then written safely.

Safety rules (docs/setup.md, "What is written, and how"):

- atomic: :func:`mkdoctor.fileio.atomic_write` (temp file in the same directory, fsync,
  rename); a symlinked file is written through to its target;
- a timestamped backup next to any existing file that changes
  (``config.mkdoctor-backup-20261121T120000``), with the file's own mode;
- modes kept (a new ssh config is 0600, a new ``~/.ssh`` 0700);
- nothing outside the managed ssh block changes (see :mod:`mkdoctor.openssh.client_config`);
- idempotent: a file whose bytes would not change is not touched (no backup, no write);
- all or nothing: if one write fails (or Ctrl-C arrives), the files already written are
  put back as they were and their backups removed.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mkdoctor.fileio import atomic_write, resolve_target
from mkdoctor.profile import Profile, config_dir, profile_text, profiles_dir
from mkdoctor.openssh import client_config as sshconfig
from mkdoctor import frontend as wl
from mkdoctor.wizard.verify_nb import verification_notebook


@dataclass
class FileChange:
    path: Path  # as the user knows it (may be a symlink)
    new: bytes
    old: Optional[bytes]  # None: the file does not exist yet
    what: str  # one line: what this file is
    mode: int = 0o644  # for a new file; an existing file keeps its mode
    dir_mode: int = 0o755  # for a missing parent directory

    @property
    def changed(self) -> bool:
        return self.old != self.new

    @property
    def target(self) -> Path:
        return resolve_target(self.path)


@dataclass
class Written:
    change: FileChange
    real: Path
    backup: Optional[Path]


def read_bytes(path: Path) -> Optional[bytes]:
    try:
        return resolve_target(path).read_bytes()
    except FileNotFoundError:
        return None


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S")


def backup_path(target: Path, stamp: str) -> Path:
    base = target.with_name(f"{target.name}.mkdoctor-backup-{stamp}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def apply(changes: list[FileChange], stamp: Optional[str] = None) -> list[Written]:
    """Write every changed file (backups first). All or nothing."""
    stamp = stamp or timestamp()
    done: list[Written] = []
    try:
        for ch in changes:
            if not ch.changed:
                continue
            target = ch.target
            backup = None
            if ch.old is not None:
                backup = backup_path(target, stamp)
                shutil.copy2(target, backup)  # content and mode
            elif not target.parent.exists():
                target.parent.mkdir(parents=True, mode=ch.dir_mode)
                os.chmod(target.parent, ch.dir_mode)
            real = atomic_write(ch.path, ch.new, mode=ch.mode)
            done.append(Written(ch, real, backup))
    except BaseException:
        rollback(done)
        raise
    return done


def rollback(done: list[Written]) -> None:
    for w in reversed(done):
        try:
            if w.change.old is None:
                w.real.unlink(missing_ok=True)
            else:
                atomic_write(w.real, w.change.old)
            if w.backup is not None:
                w.backup.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - best effort; the backup stays then
            pass


# --- what the wizard writes -------------------------------------------------------------


# where they are defined now (below the checks and the wizard, for MK501)
from mkdoctor.frontend import default_ssh_config, parallel_ssh_config  # noqa: E402,F401


def windows_note(launch_command: str) -> str:
    """One line for a Windows front end when the launch command needs POSIX quoting that
    cmd.exe would not read (single quotes: a path with $ \\ " or !)."""
    from mkdoctor.launch import split_launch, substitute

    try:
        local, _ = split_launch(substitute(launch_command, "1@127.0.0.1,2@127.0.0.1", "127.0.0.1"))
    except ValueError:
        return ""
    if not any(re.search(r'[$`\\"!]', w) for w in local[1:]):
        return ""
    return ("Windows front end: this launch command is quoted for a POSIX shell (macOS, Linux);\n"
            "use paths without $ \\ \" ! (e.g. a symlink) and run mkdoctor setup again.\n")


def frontend_dir() -> Path:
    return config_dir() / "frontend"


def frontend_paths(name: str) -> dict[str, Path]:
    d = frontend_dir()
    return {
        "text": d / f"{name}-kernel-configuration.txt",
        "install": d / f"{name}-install-kernel.wl",
        "parallel": d / f"{name}-parallel-kernels.wl",
        "verify": d / f"{name}-check-link.nb",
    }


def profile_file(name: str) -> Path:
    return profiles_dir() / f"{name}.toml"


def frontend_text(p: Profile, install: Path, parallel: Path, verify: Optional[Path] = None) -> str:
    mode_note = (
        "Tunnel mode: the launch command opens the SSH connection with two reverse forwards;\n"
        "the kernel connects to 127.0.0.1 on the remote host and ssh carries it back here.\n"
        "Nothing inbound is needed on this computer."
        if p.mode == "tunnel" else
        f"Direct mode: the kernel connects back to this computer ({p.link_host}) on ports\n"
        f"{p.link_ports[0]} and {p.link_ports[1]}; the firewall must let them in.")
    return f"""Remote kernel "{p.name}" for the Mathematica front end
Written by `mkdoctor setup`; `mkdoctor --profile {p.name}` re-checks it.

Remote host:  {p.user}@{p.hostname}:{p.port} (ssh alias {p.host})
Kernel:       {p.kernel}{f" (version {p.kernel_version})" if p.kernel_version else ""}
Mode:         {p.mode}, link ports {p.link_ports[0]},{p.link_ports[1]}
{mode_note}

The two fields of Kernel Configuration Options > Advanced Options
(copy each line exactly, without leading spaces):

Arguments to MLOpen:
{p.mlopen_arguments}

Launch command:
{p.launch_command}
{windows_note(p.launch_command)}
Click by click:
  1. Evaluation > Kernel Configuration Options...
  2. Click Add (or select "{p.name}" and click Edit to replace it).
  3. Kernel name: {p.name}
  4. Choose "Remote machine", then click "Advanced Options".
  5. Paste the "Arguments to MLOpen" line above into "Arguments to MLOpen".
  6. Paste the "Launch command" line above into "Launch command".
  7. Tick "Append name to In/Out prompts", click OK, then OK.
  8. Evaluation > Notebook's Kernel > {p.name}, and evaluate $MachineName.

Or let the front end do steps 1-7: open and evaluate
  {install}
""" + (f"""Parallel subkernels on the job's nodes ({p.subkernels} slot(s); evaluate it in the
cluster kernel, the subkernels end with its job):
  {parallel}
""" if getattr(p, "scheduler", "") else f"""Parallel kernels on the same host:
  {parallel}
""") + (f"""
Once connected, check the link from inside (the remote machine answers, Dynamic and
preemptive evaluations work): open this notebook and evaluate it once
(Evaluation > Evaluate Notebook); its last cell says what works and what to fix:
  {verify}
""" if verify else "")


def plan(p: Profile, block: sshconfig.HostBlock, ssh_config: Path, processors: int) -> list[FileChange]:
    """Every file of the configuration, in the order written. ``p.files`` is filled in."""
    paths = frontend_paths(p.name)
    p.files = [str(ssh_config), str(paths["text"]), str(paths["install"]), str(paths["parallel"]),
               str(paths["verify"])]
    changes: list[FileChange] = []

    old = read_bytes(ssh_config)
    text = sshconfig.read_text(old or b"")
    new = sshconfig.to_bytes(sshconfig.upsert_block(text, block))
    changes.append(FileChange(ssh_config, new, old, f"ssh config: the Host {block.alias} block",
                              mode=0o600, dir_mode=0o700))

    texts = {
        "text": ("front end: the two Advanced Options fields and the steps",
                 frontend_text(p, paths["install"], paths["parallel"], paths["verify"])),
        "install": ("front end: installs the kernel entry (EvaluatorNames)",
                    wl.install_file(p.name, p.launch_command, p.mlopen_arguments, p.name)),
        "parallel": parallel_text(p, block, processors),
        "verify": ("front end: the notebook that checks the link from inside",
                   verification_notebook(p)),
    }
    for key, (what, body) in texts.items():
        path = paths[key]
        changes.append(FileChange(path, body.encode("utf-8"), read_bytes(path), what))

    ppath = p.path or profile_file(p.name)
    changes.append(FileChange(ppath, profile_text(p).encode("utf-8"), read_bytes(ppath),
                              "the mkdoctor profile", mode=0o600, dir_mode=0o700))
    return changes


def parallel_text(p: Profile, block, processors: int) -> tuple[str, str]:  # noqa: ANN001
    """(what, text) of the profile's parallel-kernels file. A workstation's launches
    subkernels on the remote host from a master kernel here; a cluster profile's is
    evaluated in the cluster kernel and launches subkernels as steps of its own job on
    the job's nodes (:func:`mkdoctor.cluster.parallel_kernels_file`, srun form: it works
    with every version and needs no ssh between nodes; the module loaded as the kernel's)."""
    if getattr(p, "scheduler", ""):
        from mkdoctor import cluster

        return ("parallel subkernels in the cluster kernel's job",
                cluster.parallel_kernels_file(p.kernel, p.kernel_version, "srun", profile=p.name,
                                              module=p.module, module_init=p.module_init,
                                              subkernels=int(p.subkernels or 0)))
    return ("parallel kernels on the remote host",
            wl.parallel_file(profile=p.name, alias=p.host, user=p.user, hostname=p.hostname,
                             port=p.port, kernel=p.kernel, kernel_version=p.kernel_version,
                             processors=processors, ssh_config=parallel_ssh_config(p),
                             identity=p.identity, proxy_jump=_proxy_jump(block),
                             module=p.module, module_init=p.module_init))


def diff_text(change: FileChange) -> str:
    """A unified diff of one change (for "show what will be written")."""
    import difflib

    old = (change.old or b"").decode("utf-8", "replace").splitlines(keepends=True)
    new = change.new.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(old, new, str(change.path) + " (now)",
                                        str(change.path) + " (new)", n=1))


# --- changes made before the final write (known_hosts, a new key) ----------------------


@dataclass
class Journal:
    """Files changed before the final write, so that Ctrl-C or a refusal can put every
    file back as it was."""

    entries: list[tuple[Path, Optional[bytes], Optional[int]]] = field(default_factory=list)

    def before_change(self, path: Path) -> None:
        target = resolve_target(path)
        if any(t == target for t, _, _ in self.entries):
            return
        try:
            st = target.stat()
            self.entries.append((target, target.read_bytes(), st.st_mode & 0o7777))
        except FileNotFoundError:
            self.entries.append((target, None, None))

    def rollback(self) -> None:
        for target, old, mode in reversed(self.entries):
            try:
                if old is None:
                    target.unlink(missing_ok=True)
                else:
                    atomic_write(target, old)
                    if mode is not None:
                        os.chmod(target, mode)
            except OSError:  # pragma: no cover - best effort
                pass
        self.entries.clear()

    def commit(self) -> list[Path]:
        paths = [t for t, _, _ in self.entries]
        self.entries.clear()
        return paths


def _proxy_jump(block) -> str:  # noqa: ANN001 - a client_config.HostBlock
    """The managed block's ProxyJump ("" without one): the parallel-kernels file names it."""
    for key, value in block.carried:
        if key.lower() == "proxyjump" and value.lower() != "none":
            return value
    return block.extra.get("ProxyJump", "")


def fleet_parallel_text(names: list[str]) -> Optional[str]:
    """One parallel-kernels file for several profiles set up together: each profile's own
    ``LaunchKernels[...]`` (from its NAME-parallel-kernels.wl, as MK501 checks it), one
    after another, so a master kernel on this computer launches subkernels on every host.
    None when no profile has a file."""
    launches, needs = [], False
    for name in names:
        try:
            text = frontend_paths(name)["parallel"].read_text(encoding="utf-8")
        except OSError:
            continue
        needs = needs or 'Needs["SubKernels`RemoteKernels`"]' in text
        launches += [f"(* {wl.wl_comment(name)} *)"] + [
            ln.rstrip().rstrip(";") + ";" for ln in text.splitlines() if ln.startswith("LaunchKernels[")]
    if not launches:
        return None
    head = (f"(* Written by `mkdoctor setup` for {len(names)} hosts set up together: parallel "
            "kernels on all of them.\n   Evaluate it in a notebook whose kernel runs on this "
            "computer (the master kernel);\n   each host's own file is "
            "<config dir>/frontend/NAME-parallel-kernels.wl. *)\n")
    return head + ('Needs["SubKernels`RemoteKernels`"];\n' if needs else "") + \
        "\n".join(launches) + "\nKernels[]\n"


def write_fleet_parallel(names: list[str]) -> Optional[Path]:
    """Write :func:`fleet_parallel_text` to <config dir>/frontend/fleet-parallel-kernels.wl
    (atomically; replaced by the next several-host setup)."""
    text = fleet_parallel_text(names)
    if text is None:
        return None
    path = frontend_dir() / "fleet-parallel-kernels.wl"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, text, mode=0o600)
    return path
