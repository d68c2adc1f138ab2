"""deploy/setup.sh's Python detection, against fake machines: a stub apt-get
records what it is asked for, and nothing is installed."""

from __future__ import annotations

import subprocess
from pathlib import Path

SETUP = Path(__file__).resolve().parents[3] / "deploy" / "setup.sh"
COMMANDS = ("cc", "c++", "make", "openssl", "ip", "tc", "nft", "cargo")
LIBCLANG = (
    "usr/lib/llvm-14/lib/libclang.so",
    "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
)


def dry_run(tmp: Path, python3: str | None) -> list[str]:
    """What setup.sh --dry-run lists on a machine with every build tool and
    `python3` as given (a shell script body, or None for no python3)."""
    root, bin_dir = tmp / "root", tmp / "root" / "usr" / "bin"
    bin_dir.mkdir(parents=True)
    scripts = {name: "exit 0" for name in COMMANDS}
    if python3 is not None:
        scripts["python3"] = python3
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    for file in LIBCLANG:
        (root / file).parent.mkdir(parents=True, exist_ok=True)
        (root / file).touch()
    # Only the fake machine's commands: /usr/bin may hold a real python3.
    env = {"PATH": str(bin_dir), "LEXUM_SETUP_ROOT": str(root)}
    out = subprocess.run(
        ["/bin/bash", str(SETUP), "--dry-run"], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    return out.stdout.split()


def test_python_with_venv_needs_nothing(tmp_path: Path) -> None:
    assert dry_run(tmp_path, "exit 0") == []


def test_no_python_asks_for_python_and_venv(tmp_path: Path) -> None:
    assert dry_run(tmp_path, None) == ["python3", "python3-venv"]


def test_python_without_ensurepip_asks_for_venv(tmp_path: Path) -> None:
    # Debian's python3 without python3-venv: `import ensurepip` fails.
    assert dry_run(tmp_path, "exit 1") == ["python3-venv"]
