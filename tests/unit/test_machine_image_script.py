"""scripts/machine-image.sh keys the machine image on its build context: the digest follows the
names, modes and contents of images/machine and the builder, and nothing else (times, owners,
where the tree lives), so an unchanged context is never rebuilt and a changed one always is."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "scripts/machine-image.sh"
BUILDER = "src/dockyard/adapters/machine_image.py"


def _digest(root: Path) -> str:
    proc = subprocess.run([str(root / SCRIPT), "--digest"], capture_output=True, text=True,
                          timeout=60, check=True)
    digest = proc.stdout.strip()
    assert len(digest) == 16 and int(digest, 16) >= 0, proc.stdout
    return digest


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The script and its context in another directory, files with other times."""
    for rel in (SCRIPT, BUILDER):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / "images" / "machine", tmp_path / "images" / "machine", symlinks=True)
    for path in tmp_path.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    return tmp_path


def test_the_same_context_has_the_same_digest_anywhere(copy: Path) -> None:
    assert _digest(copy) == _digest(ROOT)


@pytest.mark.parametrize("change", ["content", "mode", "new file", "builder"])
def test_a_changed_context_has_another_digest(copy: Path, change: str) -> None:
    before = _digest(copy)
    customize = copy / "images" / "machine" / "customize.sh"
    if change == "content":
        customize.write_text(customize.read_text() + "\n# changed\n")
    elif change == "mode":
        customize.chmod(customize.stat().st_mode ^ 0o100)
    elif change == "new file":
        (copy / "images" / "machine" / "rootfs" / "etc" / "added").write_text("x\n")
    else:
        builder = copy / BUILDER
        builder.write_text(builder.read_text().replace('"less",', '"less", "curl",'))
    assert _digest(copy) != before


def test_a_file_outside_the_context_does_not_count(copy: Path) -> None:
    before = _digest(copy)
    (copy / "images" / "README.md").write_text("elsewhere\n")
    assert _digest(copy) == before
