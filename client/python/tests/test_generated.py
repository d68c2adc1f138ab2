"""The committed modules in src/lexum/v1 are what proto/ generates."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COMMITTED = HERE.parent / "src" / "lexum" / "v1"


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("generate_proto", HERE.parent / "tools" / "generate_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["generate_proto"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_modules_match_the_proto_files(tmp_path: Path) -> None:
    generator = _generator()
    generator.generate(tmp_path)  # type: ignore[attr-defined]
    fresh = tmp_path / "lexum" / "v1"
    fresh_files = sorted(p.name for p in fresh.iterdir() if p.is_file())
    committed_files = sorted(p.name for p in COMMITTED.iterdir() if p.is_file() and p.name != "__init__.py")
    assert fresh_files == committed_files
    assert len(fresh_files) == 12
    stale = [name for name in fresh_files if (fresh / name).read_bytes() != (COMMITTED / name).read_bytes()]
    assert stale == [], f"regenerate with `python tools/generate_proto.py`: {stale} differ from proto/"
