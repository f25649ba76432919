#!/usr/bin/env bash
# Idempotent host set-up for Dockyard (Debian 12, root): system packages, the venv, dockerd,
# lxcfs, a test PostgreSQL and the base image. Safe to run again; works when dockerd already runs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOGDIR=${DOCKYARD_LOGDIR:-/var/log/dockyard}
mkdir -p "$LOGDIR"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

PKGS="docker.io busybox-static iproute2 iptables nftables iputils-ping ethtool jq bc iperf3 lxcfs fuse3 procps debootstrap postgresql openvswitch-switch"
PKGS="$PKGS docker-registry"  # the image registry: `dockyard server` runs it (data in its home)
PKGS="$PKGS chromium"  # the web console's browser tests (Playwright drives it; no browser download)
PKGS="$PKGS git"  # builds (issue #13): agents clone repositories; tests serve one with git daemon
PKGS="$PKGS haproxy"  # the HTTP entrance of stacks: an entrance host's agent runs its own
PKGS="$PKGS qemu-system-x86 qemu-utils cloud-image-utils cpio"  # VM instances (agent/vm.py)
PKGS="$PKGS openssh-client"  # the VM tests log in to the guest with the real ssh client
PKGS="$PKGS e2fsprogs"  # container disks (--disk): mkfs.ext4 makes each loop-mounted layer filesystem
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  say "installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
  # Where systemd started Debian's registry service it holds :5000 with the package's config
  # (htpasswd auth): Dockyard's server starts its own instead.
  case " $missing " in *" docker-registry "*)
    if command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi;;
  esac
  # Debian's haproxy service would run /etc/haproxy/haproxy.cfg: the agent of an entrance
  # host runs its own HAProxy (adapters/haproxy.py), so the package's one is stopped and
  # masked (an upgrade does not start it again); without systemd, its init script is disabled.
  case " $missing " in *" haproxy "*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      systemctl stop haproxy >/dev/null 2>&1 || true
      systemctl mask haproxy >/dev/null 2>&1 || true
    else
      /etc/init.d/haproxy stop >/dev/null 2>&1 || true
      update-rc.d haproxy disable >/dev/null 2>&1 || true
    fi;;
  esac
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.dockyard-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing Dockyard and its dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

# dockerd: Dockyard wants live-restore so a dockerd restart leaves instances running.
if ! timeout 5 docker info >/dev/null 2>&1; then
  if [ ! -f /etc/docker/daemon.json ]; then
    mkdir -p /etc/docker
    echo '{"live-restore": true, "log-driver": "json-file"}' > /etc/docker/daemon.json
  fi
  say "starting dockerd (log: $LOGDIR/dockerd.log)"
  scripts/detach dockerd >"$LOGDIR/dockerd.log" 2>&1 </dev/null &  # no lock of ours with it
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  timeout 5 docker info >/dev/null 2>&1 || { echo "dockerd did not answer; see $LOGDIR/dockerd.log" >&2; exit 1; }
fi

# lxcfs: the instance's own view of /proc (free, top, uptime), on a shared bind mount so that
# instances survive an lxcfs restart (scripts/lxcfs.sh; an older /var/lib/lxcfs one is left be).
say "lxcfs for instances (log: $LOGDIR/lxcfs.log)"
DOCKYARD_LOGDIR="$LOGDIR" scripts/lxcfs.sh start

# PostgreSQL for the store and API tests on PostgreSQL and the two-server test (a private
# cluster on 127.0.0.1:55432, scripts/postgres.sh; the distribution's cluster is left alone).
say "postgresql for tests (log: $LOGDIR/postgres.log)"
DOCKYARD_LOGDIR="$LOGDIR" scripts/postgres.sh start

# The small base image, built from busybox-static without any network.
if ! docker image inspect dockyard/busybox:latest >/dev/null 2>&1; then
  say "building dockyard/busybox:latest"
  ctx=$(mktemp -d)
  cp /bin/busybox "$ctx/busybox"
  cp images/busybox/Dockerfile "$ctx/Dockerfile"
  docker build -q -t dockyard/busybox:latest "$ctx" >/dev/null
  rm -rf "$ctx"
fi
# CRIU for live migration: Debian 12's criu 3.17 fails `criu check` on this kernel, and
# Debian 13's criu 4.1 cannot dump a TCP/UDP socket on kernels >= 6.16 (scripts/criu/README.md);
# criu 4.2 from a Debian forky tree (debootstrap, ~80 s once), run through its own loader
# (scripts/criu-wrapper).
say "criu 4.2 tree for live migration (/var/cache/dockyard/criu-forky)"
if ! scripts/criu-wrapper --build; then
  # `make up` runs without it (live migration is then refused); `make test` and CI need it
  if [ "${DOCKYARD_TEST_REQUIRE_ALL:-}" = 1 ] || [ "${CI:-}" = true ]; then
    echo "criu tree not built (scripts/criu-wrapper --build failed): the live-migration" \
         "tests need it under make test / CI" >&2
    exit 1
  fi
  echo "criu tree not built: live migration will be refused" >&2
fi

say "set-up done"
