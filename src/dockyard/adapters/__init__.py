"""Adapters: the only code that talks to the outside (dockerd, netlink, iptables, cgroups, /proc).

Each wraps one system thinly and translates its failures into `dockyard.errors` at that one
boundary. Nothing above this layer imports docker, pyroute2 or reads /sys and /proc.
"""
