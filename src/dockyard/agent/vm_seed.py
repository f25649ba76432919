"""The NoCloud seed of a VM instance (pure): what cloud-init (or the test guest's /init)
reads at first boot from the ISO volume `cidata` the agent attaches.

    meta-data       instance-id (changes with the generation: cloud-init runs again after a
                    move), local-hostname
    user-data       #cloud-config: hostname, root's SSH keys (one `  - KEY` line each, never
                    folded: the test guest's /init reads them by line), no password login
    network-config  version 2: eth0 matched by the MAC Dockyard derived from the IP, the
                    static address, default route via the network's gateway, DNS servers
"""

from __future__ import annotations

import yaml  # type: ignore[import-untyped,unused-ignore]

from dockyard.model.agent import DesiredInstance

UNFOLDED = 1 << 20  # YAML's line width: an RSA key (~600 characters) stays on one line


def meta_data(d: DesiredInstance) -> str:
    # block style: one `key: value` line each (the test guest's /init reads them by line)
    return str(yaml.safe_dump({"instance-id": f"{d.id}-g{d.generation}",
                               "local-hostname": d.hostname}, sort_keys=False,
                              default_flow_style=False))


def user_data(d: DesiredInstance) -> str:
    config = {"hostname": d.hostname, "preserve_hostname": False,
              "disable_root": False, "ssh_pwauth": False,
              "users": [{"name": "root", "ssh_authorized_keys": list(d.ssh_keys)}]}
    return "#cloud-config\n" + str(yaml.safe_dump(config, sort_keys=False,
                                                 default_flow_style=False, width=UNFOLDED))


def network_config(d: DesiredInstance) -> str:
    # `addresses` first: the test guest's /init reads the first `addresses: [...]` line
    eth0 = {"addresses": [f"{d.ip}/{d.prefixlen}"],
            "match": {"macaddress": d.mac}, "set-name": "eth0",
            "routes": [{"to": "0.0.0.0/0", "via": d.network.gateway}],
            "nameservers": {"addresses": list(d.dns)}}
    return _dump({"version": 2, "ethernets": {"eth0": eth0}})


def _dump(data: dict[str, object]) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
