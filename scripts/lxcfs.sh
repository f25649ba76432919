#!/usr/bin/env bash
# lxcfs for Dockyard instances: scripts/lxcfs.sh start|stop|status [ROOT]
#
# ROOT (argument, else $DOCKYARD_LXCFS_ROOT, else /var/lib/dockyard/lxcfs) is made a shared bind
# mount of itself; lxcfs runs on ROOT/fs with its pid file ROOT/lxcfs.pid. Instances get read-only
# file binds of ROOT/fs/proc/... only; after a restart the agent re-binds them from the new mount
# (src/dockyard/adapters/lxcfs.py). Every verb is idempotent.
#   start   make the layout, start lxcfs detached (log: $DOCKYARD_LOGDIR/lxcfs.log), wait until
#           ROOT/fs/proc/meminfo is readable
#   stop    TERM the lxcfs of the pid file, wait until it is gone (its pid file stays locked
#           until then), unmount a mount it left behind; ROOT's own bind mount stays
#   status  exit 0 and print the pid when lxcfs answers, exit 3 otherwise
set -euo pipefail

verb=${1:-}
ROOT=${2:-${DOCKYARD_LXCFS_ROOT:-/var/lib/dockyard/lxcfs}}
ROOT=${ROOT%/}
LOGDIR=${DOCKYARD_LOGDIR:-/var/log/dockyard}
FS=$ROOT/fs
PIDFILE=$ROOT/lxcfs.pid

case "$ROOT" in
  /*) ;;
  *) echo "lxcfs.sh: ROOT must be an absolute path: $ROOT" >&2; exit 2 ;;
esac
case "$ROOT" in
  *[[:space:]\\]*) echo "lxcfs.sh: ROOT must not contain spaces or backslashes" >&2; exit 2 ;;
esac

# The mountinfo line of the topmost mount at $1 (mount points are unescaped-safe: no spaces).
mountinfo_of() { awk -v p="$1" '$5 == p { line = $0 } END { if (line == "") exit 1; print line }' /proc/self/mountinfo; }
is_mounted() { mountinfo_of "$1" >/dev/null; }
is_shared() { mountinfo_of "$1" | awk '{ for (i = 7; $i != "-"; i++) if ($i ~ /^shared:/) found = 1 } END { exit !found }'; }
readable() { head -c1 "$FS/proc/meminfo" >/dev/null 2>&1; }

# The pid of our lxcfs if that process is alive (not a zombie), else nothing.
live_pid() {
  local pid state
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  case "$pid" in ''|*[!0-9]*) return 1 ;; esac
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = lxcfs ] || return 1
  state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$state" != Z ] || return 1
  echo "$pid"
}

wait_ready() {
  for _ in $(seq 1 80); do
    readable && return 0
    sleep 0.125
  done
  echo "lxcfs on $FS did not answer; see $LOGDIR/lxcfs.log" >&2
  return 1
}

# A dead FUSE mount answers ENOTCONN to everything; lxcfs cannot mount over it.
unmount_dead() {
  if is_mounted "$FS" && ! readable; then
    fusermount -u "$FS" 2>/dev/null || umount -l "$FS"
  fi
}

ensure_layout() {
  mkdir -p "$ROOT" "$LOGDIR"
  if ! is_mounted "$ROOT"; then
    mount --bind "$ROOT" "$ROOT"
  fi
  is_shared "$ROOT" || mount --make-shared "$ROOT"
}

start() {
  ensure_layout
  if live_pid >/dev/null; then
    wait_ready
    return
  fi
  unmount_dead
  mkdir -p "$FS"
  "$(dirname "$0")/detach" lxcfs -l --enable-cfs -p "$PIDFILE" "$FS" >>"$LOGDIR/lxcfs.log" 2>&1 \
    </dev/null &  # detach: none of our open files (a held lock) goes with it
  wait_ready
}

stop() {
  local pid
  if pid=$(live_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      live_pid >/dev/null || break
      sleep 0.1
    done
    if live_pid >/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        live_pid >/dev/null || break
        sleep 0.1
      done
    fi
    if live_pid >/dev/null; then
      echo "lxcfs $pid did not exit" >&2
      return 1
    fi
  fi
  while is_mounted "$FS"; do
    fusermount -u "$FS" 2>/dev/null || umount -l "$FS"
  done
  rm -f "$PIDFILE"
}

status() {
  local pid
  if pid=$(live_pid) && readable; then
    echo "lxcfs running (pid $pid) on $FS"
    return 0
  fi
  echo "lxcfs not running on $FS"
  return 3
}

case "$verb" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status [ROOT]" >&2; exit 2 ;;
esac
