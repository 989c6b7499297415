"""Run provenance: commit, package versions, machine and command, so a number can be reproduced or rejected."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

DEFAULT_PACKAGES = ("torch", "numpy", "scipy", "transformers", "chromadb")
REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit(cwd: str | Path = REPO_ROOT) -> tuple[str | None, bool]:
    """(HEAD commit or None, whether tracked files differ from it)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=cwd,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit or None, dirty


def package_versions(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when absent)."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> dict[str, Any]:
    """Commit, package versions and machine (the BARS convention); torch details only if torch is loaded."""
    commit, dirty = git_commit()
    torch = sys.modules.get("torch")
    cuda = threads = None
    if torch is not None:
        cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        threads = torch.get_num_threads()
    return {
        "commit": commit,
        "dirty": dirty,
        "python": platform.python_version(),
        "packages": package_versions(packages),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "cuda": cuda,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def command_line(prog: str | None = None, argv: list[str] | None = None) -> str:
    """The command that is running: ``prog`` (e.g. ``python -m recsys.train``) and its arguments."""
    args = sys.argv[1:] if argv is None else list(argv)
    head = prog or " ".join([Path(sys.executable).name, sys.argv[0]])
    return " ".join([head, *args])
