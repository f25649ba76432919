"""The machine image `dockyard/machine:bookworm`, built on this host without any registry.

    debootstrap (minbase + supervisor, openssh-server, procps, ...)    ~60-120 s, once
        └─► CACHE/bookworm-KEY-rootfs.tar                              the cached base tree
              └─► unpack into a temporary ROOT, copy images/machine/rootfs/, customize.sh ROOT
                    └─► tar -C ROOT -c . ──stream──► POST /images/create (docker import)
                          CMD ["/usr/local/sbin/dockyard-init"]        ~10 s

The cached tree is keyed by what debootstrap was asked for (suite, mirror, variant, packages):
a changed package list makes a new tree, and the trees of older keys are removed.
Invariants: the cached tarball only ever appears complete (written under a `.partial` name,
then renamed); the image holds no ssh host keys (each instance makes its own on first boot);
the tar stream never sits in memory. A failing command raises `BackendError` with the tail of
its output. `list_images` is the reusable listing behind `dockyard image list`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from dockyard.adapters.docker_engine import DockerEngine
from dockyard.config import DEFAULT_IMAGE_CACHE, MACHINE_TAG
from dockyard.errors import BackendError, Conflict

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("supervisor", "openssh-server", "procps", "iproute2", "iputils-ping", "less",
            "vim-tiny")
VARIANT = "minbase"
INIT = "/usr/local/sbin/dockyard-init"
# The build inputs live in the repository (images/machine), next to src/.
IMAGE_DIR = Path(__file__).resolve().parents[3] / "images" / "machine"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImageInfo:
    id: str
    tags: list[str]
    size: int  # bytes
    created: datetime

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "tags": self.tags, "size": self.size,
                "created": self.created.isoformat()}


def list_images(engine: DockerEngine) -> list[ImageInfo]:
    """Images on the engine, newest first (untagged ones have `tags == []`)."""
    images = [ImageInfo(id=r.id, tags=r.tags, size=r.size,
                        created=datetime.fromtimestamp(int(r.created), UTC))
              for r in engine.image_records()]
    return sorted(images, key=lambda i: i.created, reverse=True)


def build_machine_image(engine: DockerEngine, cache_dir: Path = DEFAULT_IMAGE_CACHE,
                        progress: Progress = lambda _line: None, *, tag: str = MACHINE_TAG,
                        force: bool = False) -> str:
    """Build (or find) the machine image; returns its id. `force` re-imports the image from
    the cached base tree; delete `cache_dir` to download the packages again."""
    existing = engine.image_id(tag)
    if existing and not force:
        progress(f"{tag} exists ({existing[7:19]})")
        return existing
    cache_dir.mkdir(parents=True, exist_ok=True)
    base = _base_rootfs(cache_dir, progress)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="machine-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        try:
            progress(f"unpacking {base.name}")
            _run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(base)], progress)
            progress(f"adding {IMAGE_DIR}")
            shutil.copytree(IMAGE_DIR / "rootfs", root, symlinks=True, dirs_exist_ok=True)
            _run(["sh", str(IMAGE_DIR / "customize.sh"), str(root)], progress)
            progress(f"importing {tag}")
            built = _import(engine, root, tag)
        finally:  # the tree holds root-owned files and device nodes: stay on this filesystem
            _run(["rm", "-rf", "--one-file-system", str(root)], progress)
    if existing and existing != built:
        _remove_untagged(engine, existing)
    return built


def _remove_untagged(engine: DockerEngine, image: str) -> None:
    """Drop the image a forced rebuild replaced, unless a container still uses it."""
    with suppress(Conflict):
        engine.remove_image(image)


def base_key(suite: str = SUITE, mirror: str = MIRROR, variant: str = VARIANT,
             packages: tuple[str, ...] = PACKAGES) -> str:
    """The cached tree's key: what debootstrap is asked for, and nothing else."""
    wanted = "\n".join([suite, mirror, variant, *sorted(packages)])
    return hashlib.sha256(wanted.encode()).hexdigest()[:12]


def _base_rootfs(cache_dir: Path, progress: Progress) -> Path:
    """The debootstrapped tree as a tarball, made once per cache dir and key."""
    tarball = cache_dir / f"{SUITE}-{base_key()}-rootfs.tar"
    if tarball.exists():
        progress(f"using cached {tarball}")
        return tarball
    work = cache_dir / f"{SUITE}-rootfs.partial"
    _discard_tree(work, progress)  # a build killed half-way left it behind
    progress(f"debootstrap {SUITE} from {MIRROR} (about a minute)")
    _run(["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}", SUITE,
          str(work), MIRROR], progress)
    partial = tarball.with_name(tarball.name + ".partial")
    progress(f"caching {tarball}")
    _run(["tar", "-C", str(work), "--one-file-system", "--numeric-owner",
          "--exclude=./var/cache/apt/archives/*.deb", "--exclude=./var/lib/apt/lists/*",
          "-cf", str(partial), "."], progress)  # the downloaded debs are half the size
    os.replace(partial, tarball)
    _discard_tree(work, progress)
    for stale in [*cache_dir.glob(f"{SUITE}-*-rootfs.tar"), cache_dir / f"{SUITE}-rootfs.tar"]:
        if stale != tarball:  # older keys' trees (and the unkeyed one of earlier versions)
            stale.unlink(missing_ok=True)
    return tarball


def _discard_tree(path: Path, progress: Progress) -> None:
    """Remove a half-built tree; debootstrap may have left /proc or /sys mounted inside."""
    if not path.exists():
        return
    prefix = f"{path}/"
    with open("/proc/self/mounts") as fh:
        mounted = [line.split()[1] for line in fh if line.split()[1].startswith(prefix)]
    for mount_point in sorted(mounted, reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)
    _run(["rm", "-rf", "--one-file-system", str(path)], progress)


def _import(engine: DockerEngine, root: Path, tag: str) -> str:
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."],
            stdout=subprocess.PIPE, stderr=errors) as tar:
        assert tar.stdout is not None
        try:
            engine.import_tarball(tar.stdout, repository, version,  # read from the pipe
                                  [f'CMD ["{INIT}"]', "LABEL dockyard.image=machine"])
        except BaseException:
            tar.kill()
            raise
        if tar.wait() != 0:
            raise BackendError(f"tar of {root} failed (exit {tar.returncode}): "
                               f"{_tail(errors)}")
    found = engine.image_id(tag)
    if found is None:
        raise BackendError(f"import {tag}: dockerd answered but has no such image")
    return found


def _run(command: list[str], progress: Progress) -> None:
    """Run `command`, passing each output line to `progress`; failure → BackendError with the
    last lines of its output (stderr merged in)."""
    last: deque[str] = deque(maxlen=15)
    try:
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, errors="replace") as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    last.append(line)
                    progress(line)
            code = proc.wait()
    except FileNotFoundError as exc:
        raise BackendError(f"{command[0]} is not installed (scripts/setup.sh installs it)") \
            from exc
    if code != 0:
        tail = "\n".join(last)
        raise BackendError(f"{' '.join(command[:3])} … failed (exit {code}):\n{tail}")


def _tail(fh: IO[bytes], limit: int = 2000) -> str:
    fh.seek(0)
    return fh.read().decode(errors="replace")[-limit:].strip()
