#!/bin/sh
# Baseline "pipework style" plumbing by hand, as an operator would script it:
#   raw_plumb.sh CONTAINER HOST_VETH BRIDGE MAC ADDR/PREFIX GATEWAY
# veth pair, peer moved into the container's netns by PID, renamed eth0, MAC, address, up,
# default route; host end enslaved to BRIDGE and up.
set -eu
cid=$1 host=$2 bridge=$3 mac=$4 cidr=$5 gw=$6
peer="${host}p"
pid=$(docker inspect -f '{{.State.Pid}}' "$cid")
ip link add "$host" type veth peer name "$peer"
ip link set "$peer" netns "$pid"
ip link set "$host" master "$bridge" up
nsenter -t "$pid" -n ip -b - <<EOT
link set $peer name eth0
link set eth0 address $mac
addr add $cidr dev eth0
link set lo up
link set eth0 up
route add default via $gw
EOT
