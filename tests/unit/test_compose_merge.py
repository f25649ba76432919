"""Multi-file merge by the Compose Specification's rules, table-driven, through load_stack."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from dockyard.compose import ComposeError, ComposeFile, load_stack
from dockyard.compose.merge import merge, normalize

BASE = """
name: shop
services:
  web:
    image: busybox:1
    command: [httpd, -f, -p, "8080"]
    environment: {A: "1", B: "2"}
    labels: [team=web, tier=front]
    volumes: [data:/data, logs:/var/log]
    healthcheck: {test: [CMD, wget, -q, localhost], retries: 5}
    deploy:
      replicas: 2
      placement: {constraints: [node.labels.zone==a]}
volumes: {data: {}, logs: {}, other: {}}
"""
OVERRIDE = """
services:
  web:
    image: busybox:2
    command: [httpd, -v]
    environment: [B=override, C=3]
    labels: {tier: back}
    volumes:
      - other:/data
      - {type: volume, source: logs, target: /extra, read_only: true}
    healthcheck: {test: "wget localhost"}
    deploy:
      placement: {constraints: [node.labels.disk==ssd]}
"""


def test_override_merges_as_compose_does() -> None:
    spec = load_stack([ComposeFile("base.yaml", BASE), ComposeFile("over.yaml", OVERRIDE)],
                      environ={}).spec
    web = spec.services["web"]
    assert web.image == "busybox:2"  # scalar: the later file wins
    assert web.command == ("httpd", "-v")  # command: replaced, not appended
    assert web.environment == {"A": "1", "B": "override", "C": "3"}  # by key, list or map
    assert web.labels == {"team": "web", "tier": "back"}
    # volumes: merged by target; /data replaced in place, /extra appended
    assert [(v.source, v.target, v.read_only) for v in web.volumes] == [
        ("other", "/data", False), ("logs", "/var/log", False), ("logs", "/extra", True)]
    # healthcheck: a mapping (retries kept), its test replaced
    assert web.healthcheck is not None
    assert web.healthcheck.test == ("CMD-SHELL", "wget localhost")
    assert web.healthcheck.retries == 5
    assert web.replicas == 2  # deploy merged recursively
    assert web.constraints == {"zone": "a", "disk": "ssd"}  # other sequences: appended


def _yaml(text: str) -> Any:
    return normalize(yaml.safe_load(text))


@pytest.mark.parametrize(("base", "override", "expected"), [
    # mappings: missing keys added, conflicting ones merged recursively
    ("services: {s: {a: {x: 1, y: 2}}}", "services: {s: {a: {y: 3, z: 4}}}",
     {"services": {"s": {"a": {"x": 1, "y": 3, "z": 4}}}}),
    # entrypoint and healthcheck.test replace
    ("services: {s: {entrypoint: [a, b]}}", "services: {s: {entrypoint: [c]}}",
     {"services": {"s": {"entrypoint": ["c"]}}}),
    ("services: {s: {healthcheck: {test: [CMD, a]}}}",
     "services: {s: {healthcheck: {test: [CMD, b]}}}",
     {"services": {"s": {"healthcheck": {"test": ["CMD", "b"]}}}}),
    # a string command replaces a list one
    ("services: {s: {command: [a, b]}}", "services: {s: {command: c d}}",
     {"services": {"s": {"command": "c d"}}}),
    # other sequences append
    ("services: {s: {dns: [1.1.1.1]}}", "services: {s: {dns: [8.8.8.8]}}",
     {"services": {"s": {"dns": ["1.1.1.1", "8.8.8.8"]}}}),
    ("services: {s: {env_file: a.env}}", "services: {s: {env_file: [b.env]}}",
     {"services": {"s": {"env_file": ["a.env", "b.env"]}}}),
    # ports: unique by (ip, target, published, protocol)
    ("services: {s: {ports: ['80:80', '443:443']}}", "services: {s: {ports: ['80:80', '81:81']}}",
     {"services": {"s": {"ports": ["80:80", "443:443", "81:81"]}}}),
    # depends_on / networks lists become mappings and merge by name
    ("services: {s: {depends_on: [a]}}",
     "services: {s: {depends_on: {b: {condition: service_healthy}}}}",
     {"services": {"s": {"depends_on": {"a": {"condition": "service_started"},
                                        "b": {"condition": "service_healthy"}}}}}),
    ("services: {s: {networks: [front]}}",
     "services: {s: {networks: {front: {ipv4_address: 10.0.0.2}}}}",
     {"services": {"s": {"networks": {"front": {"ipv4_address": "10.0.0.2"}}}}}),
    # a new service is added whole; top-level sections merge
    ("services: {a: {image: x}}\nvolumes: {v: {}}", "services: {b: {image: y}}\nvolumes: {w: {}}",
     {"services": {"a": {"image": "x"}, "b": {"image": "y"}}, "volumes": {"v": {}, "w": {}}}),
    # volumes by target: the short and long forms share the key
    ("services: {s: {volumes: ['a:/x']}}",
     "services: {s: {volumes: [{type: volume, source: b, target: /x}]}}",
     {"services": {"s": {"volumes": [{"type": "volume", "source": "b", "target": "/x"}]}}}),
])
def test_merge_rules(base: str, override: str, expected: Any) -> None:
    base_tree, override_tree = _yaml(base), _yaml(override)
    assert merge(base_tree, override_tree) == expected
    assert base_tree == _yaml(base)  # inputs untouched


RESET_BASE = """
services:
  web:
    image: busybox:1
    command: [httpd]
    environment: {FOO: bar, KEEP: "1"}
    labels: [a=1]
    volumes: [data:/data, logs:/logs]
    depends_on: [db]
    deploy: {replicas: 3, placement: {constraints: [node.labels.zone==a]}}
  db: {image: postgres}
volumes: {data: {}, logs: {}}
"""
RESET_OVERRIDE = """
services:
  web:
    command: !reset null
    environment: {FOO: !reset null, NEW: "2"}
    labels: !override {b: "2"}
    volumes: !override [logs:/elsewhere]
    depends_on: !reset []
    deploy:
      replicas: !reset 0
      placement: {constraints: !override ["node.labels.zone==b"]}
"""


def test_reset_and_override_tags() -> None:
    spec = load_stack([ComposeFile("base.yaml", RESET_BASE),
                       ComposeFile("over.yaml", RESET_OVERRIDE)], name="s").spec
    web = spec.services["web"]
    assert web.command is None  # reset: back to the image's default
    assert web.environment == {"KEEP": "1", "NEW": "2"}
    assert web.labels == {"b": "2"}  # override: not merged with a=1
    assert [(v.source, v.target) for v in web.volumes] == [("logs", "/elsewhere")]
    assert web.depends_on == {}
    assert web.replicas == 1  # the default
    assert web.constraints == {"zone": "b"}
    assert spec.start_order == ("db", "web")


def test_tags_in_a_file_alone_are_resolved_there() -> None:
    text = "services: {web: {image: x, command: !reset null, labels: !override [a=1]}}"
    web = load_stack([ComposeFile("c.yaml", text)], name="s").spec.services["web"]
    assert (web.command, web.labels) == (None, {"a": "1"})


def test_an_override_value_is_still_interpolated_and_validated() -> None:
    files = [ComposeFile("a.yaml", "services: {web: {image: x, environment: {A: '1'}}}"),
             ComposeFile("b.yaml", "services: {web: {environment: !override {B: '${V}'},"
                                   " deploy: !override {replicas: x}}}")]
    with pytest.raises(ComposeError) as info:
        load_stack(files, name="s", environ={"V": "v"})
    assert info.value.problems == (
        "b.yaml: services.web.deploy.replicas: 'x' is not of type 'integer'",)
    files[1] = ComposeFile("b.yaml", "services: {web: {environment: !override {B: '${V}'}}}")
    web = load_stack(files, name="s", environ={"V": "v"}).spec.services["web"]
    assert web.environment == {"B": "v"}


def test_three_files_apply_in_order() -> None:
    files = [ComposeFile(f"{n}.yaml", f"services: {{web: {{image: busybox:{n}}}}}")
             for n in (1, 2, 3)]
    assert load_stack(files, name="s").spec.services["web"].image == "busybox:3"


def test_interpolation_is_per_file_before_merge() -> None:
    files = [ComposeFile("a.yaml", "services: {web: {image: 'busybox:${TAG}'}}"),
             ComposeFile("b.yaml", "services: {web: {environment: {T: '$$TAG'}}}")]
    web = load_stack(files, name="s", environ={"TAG": "9"}).spec.services["web"]
    assert web.image == "busybox:9"
    assert web.environment == {"T": "$TAG"}
