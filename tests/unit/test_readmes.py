"""The folder READMEs stay complete and true as the code grows (STYLE.md §9).

Every module (`*.py` except `__init__.py`) of a folder under src/dockyard is named in the
README.md that documents it: the folder's own, or for a sub-folder without one the nearest
above it (`server/routers/images.py` is named as `routers/images.py` in server/README.md).
Every module a README names exists, so a rename or a deletion cannot leave the README behind.
Alembic's generated revisions (`store/migrations/versions/`) are history, not design: the store
README names the folder, not each file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "dockyard"
UNLISTED = (SRC / "store" / "migrations" / "versions",)
# The subsystems issue #17 names; discovery must find each (a guard against a vacuous pass).
SUBSYSTEMS = ("adapters", "agent", "server", "server/routers", "server/alerts", "store",
              "scheduler", "model", "cli", "devcluster")
MODULE_NAME = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*\w+\.py)\b")


def folders() -> list[Path]:
    """Every folder below src/dockyard that holds modules."""
    found = {p.parent for p in SRC.rglob("*.py") if "__pycache__" not in p.parts}
    return sorted(f for f in found - {SRC}
                  if not any(f == u or u in f.parents for u in UNLISTED))


def readme_of(folder: Path) -> Path:
    """The README that documents `folder`: its own, else the nearest one above it."""
    for candidate in (folder, *folder.parents):
        if candidate == SRC:
            break
        if (candidate / "README.md").exists():
            return candidate / "README.md"
    raise AssertionError(f"{folder.relative_to(SRC)}/ has no README.md (nor does a folder "
                         "above it below src/dockyard)")


def modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")


def names(readme: Path) -> set[str]:
    return set(MODULE_NAME.findall(readme.read_text()))


def test_every_subsystem_is_found_and_has_its_own_readme() -> None:
    found = {f.relative_to(SRC).as_posix() for f in folders()}
    assert set(SUBSYSTEMS) <= found, set(SUBSYSTEMS) - found
    top = {f.relative_to(SRC).parts[0] for f in folders()}
    missing = sorted(t for t in top if not (SRC / t / "README.md").exists())
    assert not missing, f"folders without a README.md: {missing}"


@pytest.mark.parametrize("folder", folders(), ids=lambda f: f.relative_to(SRC).as_posix())
def test_the_readme_names_every_module_of_the_folder(folder: Path) -> None:
    readme = readme_of(folder)
    named = names(readme)
    assert modules(folder), f"{folder} holds no module"
    missing = [m.relative_to(readme.parent).as_posix() for m in modules(folder)
               if m.relative_to(readme.parent).as_posix() not in named]
    assert not missing, (f"{readme.relative_to(ROOT)} does not name {missing}: add one line "
                         "each saying what the module holds")


@pytest.mark.parametrize("readme", sorted(SRC.rglob("README.md")),
                         ids=lambda r: r.parent.relative_to(SRC).as_posix())
def test_every_module_a_readme_names_exists(readme: Path) -> None:
    """A name is looked up beside the README, then under src/dockyard (`agent/console.py`),
    under src/ (`dockyard/tls.py`) and from the repository's root (`tests/faultrun.py`)."""
    bases = (readme.parent, SRC, SRC.parent, ROOT)
    gone = sorted(name for name in names(readme)
                  if not any((base / name).is_file() for base in bases))
    assert not gone, f"{readme.relative_to(ROOT)} names modules that do not exist: {gone}"
