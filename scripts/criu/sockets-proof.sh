#!/bin/bash
# Plain criu, no Dockyard, no runc: checkpoint and restore a container-like process tree (its
# own pid and network namespaces) holding a listening TCP socket, an established TCP
# connection and a UDP socket; the counter the pair ping-pongs over the connection must go on.
#   scripts/criu/sockets-proof.sh                 the tree scripts/criu-wrapper runs (4.2)
#   DOCKYARD_CRIU_ROOT=/var/cache/dockyard/criu-trixie scripts/criu/sockets-proof.sh   (4.1)
# root; prints each step; exit 0 when the counter went on after the restore.
set -u
here=$(cd "$(dirname "$0")" && pwd)
criu="$here/../criu-wrapper"
dir=$(mktemp -d /tmp/criu-proof.XXXXXX)
log=$dir/counter
: >"$log"
tree() { pgrep -f "sockets-proof.py $log"; }
cleanup() { for p in $(tree); do kill "$p"; done; rm -rf "$dir"; }
trap cleanup EXIT
wait_for() {  # wait_for SECONDS COMMAND...: poll until the command succeeds
    local end=$((SECONDS + $1)); shift
    until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.1; done
}
counted() { [ "$(tail -1 "$log")" -gt "$1" ] 2>/dev/null; }
"$criu" --version | head -1
setsid unshare -n -p -f sh -c \
    "ip link set lo up; exec setsid python3 $here/sockets-proof.py $log" </dev/null >/dev/null 2>&1 &
wait_for 10 counted 2 || { echo "the process tree did not start"; exit 1; }
root=$(for p in $(tree); do grep -q "NSpid:.*[[:space:]]1$" /proc/"$p"/status && echo "$p"; done)
echo "root: $root (pid 1 of its namespace)"; nsenter -t "$root" -n ss -tuan
mkdir "$dir/img"
if ! "$criu" dump -t "$root" -D "$dir/img" --tcp-established -o dump.log; then
    echo "DUMP FAILED:"; grep Error "$dir/img/dump.log"; exit 1
fi
at=$(tail -1 "$log"); echo "dumped at count $at; processes left: $(tree | wc -l)"
if ! "$criu" restore -D "$dir/img" --tcp-established -d -o restore.log; then
    echo "RESTORE FAILED:"; grep Error "$dir/img/restore.log"; exit 1
fi
if ! wait_for 10 counted $((at + 5)); then echo "the counter stopped at $(tail -1 "$log")"; exit 1; fi
root=$(tree | head -1)
echo "restored: count $(tail -1 "$log") (was $at), the same sockets:"; nsenter -t "$root" -n ss -tuan
