"""Saved profiles: what ``mkdoctor setup`` wrote, read back by ``mkdoctor``.

A profile is a TOML file in the user's config directory (platformdirs; the environment
variable ``MKDOCTOR_CONFIG_DIR`` overrides it, which the tests use), named
``profiles/NAME.toml``. ``--profile`` takes a NAME or a PATH.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from mkdoctor.options import (
    MODES,
    UsageError,
    check_kernel,
    local_path,
    no_backquote,
    parse_host,
    parse_link_host,
)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def config_dir() -> Path:
    env = os.environ.get("MKDOCTOR_CONFIG_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("mkdoctor"))


def profiles_dir() -> Path:
    return config_dir() / "profiles"


@dataclass
class Profile:
    name: str
    host: str  # the ssh destination the front end uses (the managed alias mk-NAME)
    hostname: str = ""
    user: str = ""
    port: int = 22
    identity: str = ""
    ssh_config: str = ""
    kernel: str = ""
    kernel_version: str = ""
    # the kernel is on PATH only after `module load MODULE` (environment modules, Lmod),
    # `module` defined by sourcing MODULE_INIT (mkdoctor.launch.kernel_prefix)
    module: str = ""
    module_init: str = ""
    mode: str = "tunnel"
    link_ports: list[int] = field(default_factory=lambda: [31415, 31416])
    link_host: str = ""
    sshd_config: str = ""
    # cluster profiles: the kernel runs on a compute node the scheduler allocates
    scheduler: str = ""  # "slurm"; empty: the kernel runs on host itself
    partition: str = ""
    time: str = ""
    cpus: int = 0
    account: str = ""
    licenses: str = ""
    cluster_link: str = ""  # "forward" (ssh -R; default) or "stdio" (no port forwarding)
    laptop_python: str = ""  # stdio: the Python the laptop relay runs with
    subkernels: int = 0  # extra task slots in the kernel's job for parallel subkernels
    launch_command: str = ""
    mlopen_arguments: str = ""
    files: list[str] = field(default_factory=list)
    path: Optional[Path] = None  # where it was read from; not saved

    def to_toml_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("path")
        frontend = {"launch_command": data.pop("launch_command"),
                    "mlopen_arguments": data.pop("mlopen_arguments")}
        data = {k: v for k, v in data.items() if v not in ("", None)}
        data["frontend"] = frontend
        return data


def _loads(text: str) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads(text)


def profile_path(name_or_path: str) -> Path:
    if NAME_RE.match(name_or_path) and not name_or_path.endswith(".toml"):
        return profiles_dir() / f"{name_or_path}.toml"
    return local_path(name_or_path, "--profile")


def load_profile(name_or_path: str) -> Profile:
    """Read a profile; any problem is a :class:`UsageError` (one line, exit 2)."""
    if not name_or_path:
        raise UsageError("--profile: empty name or path")
    path = profile_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--profile {name_or_path}: no such profile ({path})") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--profile {name_or_path}: cannot read {path}: {exc}") from None
    try:
        data = _loads(text)
    except Exception as exc:  # tomllib.TOMLDecodeError
        raise UsageError(f"--profile {name_or_path}: malformed TOML in {path}: {exc}") from None
    return profile_from_dict(data, path)


def profile_from_dict(data: dict[str, Any], path: Optional[Path] = None) -> Profile:
    where = str(path) if path else "profile"
    frontend = data.pop("frontend", {}) or {}
    if not isinstance(frontend, dict):
        raise UsageError(f"{where}: [frontend] must be a table")
    known = {f for f in Profile.__dataclass_fields__ if f != "path"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}")
    if not isinstance(data.get("host"), str) or not data.get("host"):
        raise UsageError(f"{where}: missing 'host'")
    for key in ("port",):
        if key in data and (not isinstance(data[key], int) or not 1 <= data[key] <= 65535):
            raise UsageError(f"{where}: '{key}' must be a number from 1 to 65535")
    ports = data.get("link_ports", [31415, 31416])
    if (not isinstance(ports, list) or len(ports) != 2
            or not all(isinstance(p, int) and 1024 <= p <= 65535 for p in ports) or ports[0] == ports[1]):
        raise UsageError(f"{where}: 'link_ports' must be two distinct ports 1024-65535")
    if data.get("mode", "tunnel") not in MODES:
        raise UsageError(f"{where}: 'mode' must be direct or tunnel")
    for key, value in data.items():
        if key not in ("port", "link_ports", "files", "cpus", "subkernels") and not isinstance(value, str):
            raise UsageError(f"{where}: '{key}' must be a string")
    _validate_values(data, where)
    if "name" not in data:
        data["name"] = path.stem if path else "profile"
    return Profile(
        **data,
        launch_command=str(frontend.get("launch_command", "")),
        mlopen_arguments=str(frontend.get("mlopen_arguments", "")),
        path=path,
    )


def _validate_values(data: dict[str, Any], where: str) -> None:
    """The values that a flag also sets are checked by that flag's own function, so a
    profile cannot hold what the command line refuses (the message names file and key)."""
    def label(key: str) -> str:
        return f"{where}: {key}"

    parse_host(data["host"], label("host"))
    if data.get("kernel"):
        check_kernel(data["kernel"], label("kernel"))
    if data.get("link_host"):
        parse_link_host(data["link_host"], label("link_host"))
    if data.get("ssh_config"):
        no_backquote(data["ssh_config"], label("ssh_config"))
        local_path(data["ssh_config"], label("ssh_config"))
    if data.get("identity"):
        local_path(data["identity"], label("identity"))
    from mkdoctor.options import SCHEDULERS, slurm_cpus, slurm_time, slurm_word

    if data.get("scheduler") and data["scheduler"] not in SCHEDULERS:
        raise UsageError(f"{label('scheduler')}: must be one of {', '.join(SCHEDULERS)}")
    for key in ("partition", "account", "licenses"):
        if data.get(key):
            slurm_word(data[key], label(key))
    if data.get("time"):
        slurm_time(data["time"], label("time"))
    if data.get("cluster_link") and data["cluster_link"] not in ("forward", "stdio"):
        raise UsageError(f"{label('cluster_link')}: must be forward or stdio")
    if data.get("cpus"):
        slurm_cpus(data["cpus"], label("cpus"))
    if data.get("subkernels"):
        slurm_cpus(data["subkernels"], label("subkernels"))


def list_profiles() -> list[Path]:
    d = profiles_dir()
    return sorted(d.glob("*.toml")) if d.is_dir() else []


def profile_text(profile: Profile) -> str:
    """The TOML text :func:`save_profile` writes (deterministic: a second identical setup
    writes the same bytes)."""
    import tomli_w

    text = "# Written by `mkdoctor setup`. `mkdoctor --profile NAME` checks it.\n"
    return text + tomli_w.dumps(profile.to_toml_dict())


def save_profile(profile: Profile) -> Path:
    from mkdoctor.fileio import atomic_write

    path = profile.path or profiles_dir() / f"{profile.name}.toml"
    return atomic_write(path, profile_text(profile), mode=0o600)
