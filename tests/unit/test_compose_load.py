"""load_stack: YAML and schema errors, Dockyard's supported subset, cross checks, and the
mapping to Dockyard's terms (limits, durations, defaults), table-driven."""

from __future__ import annotations

import pytest

from dockyard.compose import ComposeError, ComposeFile, load_stack
from dockyard.errors import InvalidRequest
from dockyard.model.instance import DEFAULT_PIDS
from dockyard.model.stack import (
    DependencyCondition,
    FailureAction,
    HealthcheckSpec,
    StackNetwork,
    StackVolume,
    UpdateConfig,
    UpdateOrder,
    parse_duration,
)


def load(text: str, **kwargs: object) -> object:
    return load_stack([ComposeFile("compose.yaml", text)], name="shop", **kwargs)  # type: ignore[arg-type]


def problems(text: str, **kwargs: object) -> tuple[str, ...]:
    with pytest.raises(ComposeError) as info:
        load(text, **kwargs)
    assert isinstance(info.value, InvalidRequest) and info.value.status == 422
    return info.value.problems


@pytest.mark.parametrize(("text", "expected"), [
    ("services:\n  web:\n    image: [x\n", "compose.yaml: invalid YAML at line 4, column 1"),
    ("services:\n  web: {image: x\n", "compose.yaml: invalid YAML at line 3, column 1"),
    ("services:\n\tweb: {}\n", "compose.yaml: invalid YAML at line 2, column 1"),
    ("a: 1\na: [\n", "compose.yaml: invalid YAML at line 3"),
    ("services: {web: !custom null}", "compose.yaml: invalid YAML at line 1, column 17"),
    ("x: 1\ny: !!int abc", "compose.yaml: invalid YAML at line 2, column 4: 'abc' is not an "
                           "integer"),
    ("x: !!bool yes", "compose.yaml: invalid YAML at line 1, column 4: 'yes' is not true or"),
    ("x: !!python/object/apply:os.system [true]", "compose.yaml: invalid YAML at line 1, "
                                                 "column 4"),
    ("", "compose.yaml: the file is empty"),
    ("services: {1: {image: x}}", "services.1: keys must be strings (quote 1)"),
    ("services: {web: {image: x, environment: [{true: 1}]}}",
     "services.web.environment[0].True: keys must be strings (quote True)"),
    ("- a\n- b\n", "compose.yaml: the top level must be a mapping"),
])
def test_invalid_yaml_names_line_and_column(text: str, expected: str) -> None:
    found = problems(text)
    assert len(found) == 1 and found[0].startswith(expected), found


@pytest.mark.parametrize(("text", "expected"), [
    ("services: {web: {image: x, deploy: {replicas: x}}}",
     "services.web.deploy.replicas: 'x' is not of type 'integer'"),
    ("services: {web: {image: x, deploy: {replicas: '${N}'}}}",
     "services.web.deploy.replicas: 'three' is not of type 'integer'"),
    ("services: {web: {image: 5}}", "services.web.image: 5 is not of type 'string'"),
    ("services: {web: {image: x, cap_addd: [A]}}", "services.web.cap_addd: not a Compose key"),
    ("services: {web: {image: x}}\nvolumz: {}", "volumz: not a Compose key"),
    ("services: {web: {image: x, healthcheck: {retries: many}}}",
     "services.web.healthcheck.retries: 'many' is not of type 'number'"),
    ("services: {web: {image: x, deploy: {update_config: {order: random}}}}",
     "services.web.deploy.update_config.order: 'random' is not one of "
     "['start-first', 'stop-first']"),
    ("services: {web: {image: x, environment: 7}}",
     "services.web.environment: 7 is not of type 'object'"),
    ("services: {web: {image: x, deploy: {resources: {limits: {pids: lots}}}}}",
     "services.web.deploy.resources.limits.pids: 'lots' is not of type 'integer'"),
    ("name: Shop!\nservices: {web: {image: x}}", "name: 'Shop!' does not match"),
    ("services: {web: {image: x, depends_on: {db: {}}}, db: {image: x}}",
     "services.web.depends_on.db: 'condition' is a required property"),
])
def test_schema_errors_carry_their_json_path(text: str, expected: str) -> None:
    found = problems(text, environ={"N": "three"})
    assert any(p.startswith(expected) for p in found), found


def test_schema_errors_name_the_file_when_there_are_several() -> None:
    with pytest.raises(ComposeError) as info:
        load_stack([ComposeFile("a.yaml", "services: {web: {image: x}}"),
                    ComposeFile("b.yaml", "services: {web: {deploy: {replicas: x}}}")],
                   name="s")
    assert info.value.problems == (
        "b.yaml: services.web.deploy.replicas: 'x' is not of type 'integer'",)


@pytest.mark.parametrize(("text", "expected"), [
    ("services: {web: {image: x, cap_add: [NET_ADMIN]}}",
     ["services.web.cap_add: not supported"]),
    ("services: {web: {build: ., cap_add: [A], privileged: true}}",
     ["services.web.build: not supported yet (builds)", "services.web.cap_add: not supported",
      "services.web.privileged: not supported"]),
    ("services: {web: {image: x, ports: ['80:80']}}",
     ["services.web.ports: not supported yet: publish an HTTP service through the entrance "
      "with x-dockyard: {http: {host, port}}"]),
    ("services: {web: {image: x, deploy: {mode: global, resources: {limits: {cpus: 1},"
     " reservations: {devices: []}}}}}",
     ["services.web.deploy.mode: not supported",
      "services.web.deploy.resources.reservations.devices: not supported"]),
    ("services: {web: {image: x, deploy: {restart_policy: {condition: any}}}}",
     ["services.web.deploy.restart_policy: not supported"]),
    ("services: {web: {image: x, x-dockyard: {cores: 1, gpus: 2}}}",
     ["services.web.x-dockyard.gpus: not supported"]),
    ("services: {web: {image: x}}\nsecrets: {s: {file: ./s}}", ["secrets: not supported"]),
    ("services: {web: {image: x}}\nnetworks: {n: {driver: overlay}}",
     ["networks.n.driver: not supported"]),
    ("services: {web: {image: x}}\nvolumes: {v: {driver: nfs}}",
     ["volumes.v.driver: not supported"]),
    ("services: {web: {image: x, deploy: {labels: {a: b}}}}\nnetworks: {n: {labels: [a=b]}}",
     ["services.web.deploy.labels: not supported", "networks.n.labels: not supported"]),
    ("services: {web: {image: x, networks: {n: {aliases: [a]}}}}\nnetworks: {n: {}}",
     ["services.web.networks.n.aliases: not supported"]),
])
def test_unsupported_keys_are_refused_with_their_path(text: str, expected: list[str]) -> None:
    assert list(problems(text)) == expected


def test_one_wrong_value_gives_one_problem() -> None:
    """A service with a bad field is not built further (no follow-on noise)."""
    assert problems("services: {web: {image: x, deploy: {resources: {limits: {memory: 1k}}}}}"
                    ) == ("services.web.deploy.resources.limits.memory: memory must be at "
                          "least 6M (Docker's minimum)",)


def test_yaml_is_read_as_yaml_1_2_like_compose() -> None:
    """`restart: no` is the string "no" (PyYAML alone says False), `yes`/`on` stay strings,
    0755 is decimal, 1:30 a string."""
    text = """
services:
  web:
    image: x
    restart: no
    environment: {A: yes, B: on, C: 0755, D: 1:30, E: true, F: 0x1F, G: 1.50}
"""
    web = load(text).spec.services["web"]  # type: ignore[attr-defined]
    assert web.restart == "no"
    assert web.environment == {"A": "yes", "B": "on", "C": "755", "D": "1:30", "E": "true",
                               "F": "31", "G": "1.5"}


def test_extension_keys_are_accepted() -> None:
    text = """
x-common: &common {image: "busybox:1"}
services:
  web:
    <<: *common
    x-note: anything
    deploy: {x-owner: me}
"""
    assert load(text).spec.services["web"].image == "busybox:1"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "expected"), [
    ("services: {web: {image: x, volumes: ['./data:/data']}}",
     "services.web.volumes[0]: only named volumes are supported"),
    ("services: {web: {image: x, volumes: ['/srv:/data']}}",
     "services.web.volumes[0]: only named volumes are supported"),
    ("services: {web: {image: x, volumes: ['/data']}}",
     "services.web.volumes[0]: anonymous volumes are not supported"),
    ("services: {web: {image: x, volumes: [{type: tmpfs, target: /t}]}}",
     "services.web.volumes[0]: only named volumes are supported"),
    ("services: {web: {image: x, volumes: ['nope:/data']}}",
     "services.web.volumes[0]: volume 'nope' is not declared in the top-level volumes"),
    ("services: {web: {image: x, volumes: [{type: volume, source: v, target: /d, "
     "volume: {nocopy: true}}]}}\nvolumes: {v: {}}",
     "services.web.volumes[0].volume: not supported"),
    ("services: {web: {image: x, volumes: ['v:/d:z']}}\nvolumes: {v: {}}",
     "services.web.volumes[0]: 'v:/d:z': write VOLUME:/path or VOLUME:/path:ro"),
    ("services: {web: {image: x, volumes: ['v:relative']}}\nvolumes: {v: {}}",
     "services.web.volumes[0].target: volume target 'relative' must be an absolute path"),
    ("services: {web: {image: x, volumes: ['v:/d', 'w:/d/']}}\nvolumes: {v: {}, w: {}}",
     "services.web.volumes: two volumes have the same target"),
    ("services: {web: {command: x}}", "services.web.image: required"),
    ("services: {web: {image: 'Not An Image'}}", "services.web.image: 'Not An Image' is not"),
    ("services: {web: {image: x, hostname: -bad-}}", "services.web.hostname: must be a DNS"),
    ("services: {web: {image: x, restart: 'on-failure:3'}}", "services.web.restart: Input "
                                                           "should be 'no', 'always'"),
    ("services: {web: {image: x, depends_on: {db: {condition: "
     "service_completed_successfully}}}, db: {image: x}}",
     "services.web.depends_on.db.condition: 'service_completed_successfully' is not "
     "supported"),
    ("services: {web: {image: x, healthcheck: {test: [WHAT, x]}}}",
     "services.web.healthcheck.test: must be a string"),
    ("services: {web: {image: x, healthcheck: {test: [CMD, x], interval: soon}}}",
     "services.web.healthcheck.interval: 'soon' is not a duration"),
    ("services: {web: {image: x, deploy: {update_config: {failure_action: explode}}}}",
     "services.web.deploy.update_config.failure_action: Input should be 'continue'"),
    ("services: {web: {image: x, deploy: {update_config: {max_failure_ratio: 2}}}}",
     "services.web.deploy.update_config.max_failure_ratio: Input should be less than"),
    ("services: {web: {image: x, deploy: {resources: {limits: {memory: 1k}}}}}",
     "services.web.deploy.resources.limits.memory: memory must be at least 6M"),
    ("services: {web: {image: x, deploy: {resources: {limits: {cpus: lots}}}}}",
     "services.web.deploy.resources.limits.cpus: Input should be a valid number"),
    ("services: {web: {image: x, deploy: {placement: {constraints: [node.role==manager]}}}}",
     "services.web.deploy.placement.constraints[0]: 'node.role==manager': only "
     "node.labels.KEY==VALUE is supported"),
    ("services: {web: {image: x, x-dockyard: {http: {host: a.example}}}}",
     "services.web.x-dockyard.http.port: Field required"),
    ("services: {web_app: {image: x}}",
     "services.web_app: its replicas would be named 'shop-web_app-1', which is not a valid "
     "instance name"),
    ("services: {}", "services: the stack has no services"),
    ("services: {web: {image: x, environment: {BAD-KEY: 1}}}",
     "services.web.environment: environment name 'BAD-KEY' must match"),
    ("services: {web: {image: x, env_file: [a.env]}}",
     "services.web.environment: environment value of 'M' must be one line"),
    ("services: {web: {image: x, labels: {dockyard.instance: forged}}}",
     "services.web.labels: label 'dockyard.instance': keys are 1-255 characters and "
     "'dockyard.' is Dockyard's own prefix"),
    ("services: {web: {image: x}}\nnetworks: {n: {name: Bad_Net}}",
     "networks.n.name: must be 1-63 characters of lower-case letters"),
    ("services: {web: {image: x}}\nvolumes: {v: {external: true, name: Bad!}}",
     "volumes.v.name: volume name 'Bad!' must be 1-63 characters"),
    ("services: {web: {image: x}}\nnetworks: {n: {ipam: {config: [{subnet: nonsense}]}}}",
     "networks.n: subnet 'nonsense' is not an IPv4 network"),
    ("services: {web: {image: x}}\nnetworks: {n: {ipam: {config: [{subnet: 10.1.0.0/24, "
     "gateway: 10.2.0.1}]}}}", "networks.n: gateway 10.2.0.1 is not in 10.1.0.0/24"),
    ("services: {web: {image: x}}\nnetworks: {n: {ipam: {config: [{subnet: 10.1.0.0/24, "
     "ip_range: 10.1.0.0/25}]}}}", "networks.n.ipam.config[0].ip_range: not supported"),
])
def test_values_dockyard_cannot_run_are_refused_with_their_path(text: str,
                                                                 expected: str) -> None:
    found = problems(text, read_file={"a.env": 'M="two\nlines"'}.__getitem__)
    assert any(p.startswith(expected) for p in found), found


@pytest.mark.parametrize(("services", "expected"), [
    ("web: {image: x, depends_on: [db]}", "services.web.depends_on.db: no such service"),
    ("a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}",
     "services.a.depends_on: dependency cycle: a -> b -> a"),
    ("a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [c]}\n"
     "  c: {image: x, depends_on: {a: {condition: service_healthy}}}\n  d: {image: x}",
     "services.a.depends_on: dependency cycle: a -> b -> c -> a"),
    ("a: {image: x, depends_on: [a]}", "services.a.depends_on: dependency cycle: a -> a"),
    ("a: {image: x}\n  b: {image: x, depends_on: [c]}\n  c: {image: x, depends_on: [b]}",
     "services.b.depends_on: dependency cycle: b -> c -> b"),
    ("a: {image: x, networks: {n: {ipv4_address: 10.9.0.5}}}\n"
     "  b: {image: x, networks: {n: {ipv4_address: 10.9.0.5}}}",
     "services.b.networks.n.ipv4_address: 10.9.0.5 is also the address of service a"),
    ("a: {image: x, networks: {n: {ipv4_address: 10.9.0.5}}, deploy: {replicas: 2}}",
     "services.a.networks.n.ipv4_address: a fixed address needs replicas <= 1 (replicas: 2)"),
    ("a: {image: x, networks: {n: {ipv4_address: 10.8.0.5}}}",
     "services.a.networks.n.ipv4_address: 10.8.0.5 is not in the network's subnet "
     "10.9.0.0/24"),
    ("a: {image: x, networks: {n: {ipv4_address: 10.9.0.300}}}",
     "services.a.networks.n.ipv4_address: '10.9.0.300' is not an IPv4 address"),
    ("a: {image: x, networks: [n, m]}",
     "services.a.networks: one network per service (a Dockyard instance has one interface)"),
    ("a: {image: x, networks: [undeclared]}",
     "services.a.networks.undeclared: not declared in the top-level networks"),
])
def test_cross_checks(services: str, expected: str) -> None:
    text = (f"services:\n  {services}\n"
            "networks: {n: {ipam: {config: [{subnet: 10.9.0.0/24}]}}}\n")
    found = problems(text)
    assert expected in found, found


def test_addresses_may_repeat_on_different_networks() -> None:
    text = """
services:
  a: {image: x, networks: {n: {ipv4_address: 10.9.0.5}}}
  b: {image: x, networks: {m: {ipv4_address: 10.9.0.5}}}
networks: {n: {}, m: {}}
"""
    spec = load(text).spec  # type: ignore[attr-defined]
    assert spec.services["a"].fixed_ip and spec.services["b"].fixed_ip


def test_volume_and_network_names() -> None:
    text = """
services: {web: {image: x, networks: [n], volumes: ['mine:/a', 'ext:/b', 'named:/c']}}
networks: {n: {}}
volumes: {mine: {}, ext: {external: true}, named: {name: exact.name}}
"""
    spec = load(text).spec  # type: ignore[attr-defined]
    assert spec.volumes == {"mine": StackVolume(name="shop-mine"),
                            "ext": StackVolume(name="ext", external=True),
                            "named": StackVolume(name="exact.name")}
    assert spec.networks == {"n": StackNetwork(name="shop-n")}  # no implicit default: unused


def test_start_order_is_topological_and_deterministic() -> None:
    text = """
services:
  web:
    image: x
    depends_on: {api: {condition: service_healthy}, cache: {condition: service_started}}
  api: {image: x, depends_on: [db, cache]}
  db: {image: x}
  cache: {image: x}
  admin: {image: x, depends_on: [db]}
"""
    spec = load(text).spec  # type: ignore[attr-defined]
    assert spec.start_order == ("cache", "db", "admin", "api", "web")
    assert spec.services["web"].depends_on == {
        "api": DependencyCondition.service_healthy, "cache": DependencyCondition.service_started}


FULL = """
name: ignored-when-a-name-is-given
services:
  web:
    image: registry.local:5000/shop/web:${TAG:-1}
    entrypoint: /bin/sh -c
    command: ["httpd -f -p 8080"]
    env_file: [web.env]
    environment: {PORT: 8080, DEBUG: false, FROM_SHELL: null, ABSENT: null}
    hostname: web
    networks: {front: {}}
    volumes: ["data:/data:ro"]
    labels: {team: shop}
    restart: unless-stopped
    healthcheck: {test: ["CMD", "wget", "-q", "localhost:8080"], interval: 1m30s,
                  timeout: 500ms, start_period: 10s}
    deploy:
      replicas: 3
      resources:
        limits: {cpus: "1.5", memory: 256M, pids: 200}
        reservations: {cpus: 0.25, memory: 64M}
      placement: {constraints: ["node.labels.zone == eu-1"]}
      update_config: {parallelism: 2, delay: 10s, order: start-first,
                      failure_action: rollback, monitor: 1m, max_failure_ratio: 0.3}
    x-dockyard: {cores: 2, http: {host: shop.example, port: 8080}}
  db:
    image: postgres:16
    networks: {back: {ipv4_address: 10.240.7.10}}
networks:
  front: {}
  back: {external: true, name: prod-back, ipam: {config: [{subnet: 10.240.7.0/24,
         gateway: 10.240.7.1}]}}
volumes:
  data: {external: true}
"""


def test_a_full_file_maps_to_dockyard_terms() -> None:
    files = {"web.env": "FROM_FILE=file\nPORT=1\n"}
    loaded = load_stack([ComposeFile("compose.yaml", FULL)], name="shop",
                        environ={"FROM_SHELL": "shell"}, read_file=files.__getitem__)
    spec = loaded.spec
    assert spec.name == "shop" and loaded.warnings == ()
    web = spec.services["web"]
    assert web.image == "registry.local:5000/shop/web:1"
    assert web.entrypoint == ("/bin/sh", "-c") and web.command == ("httpd -f -p 8080",)
    # env_file first, environment over it; KEY: null from the shell or left out
    assert web.environment == {"FROM_FILE": "file", "PORT": "8080", "DEBUG": "false",
                               "FROM_SHELL": "shell"}
    assert web.limits.cores == 2 and web.limits.cpus == 1.5
    assert web.limits.memory == 256 * 1024 * 1024 and web.limits.pids == 200
    assert web.reservations.cpus == 0.25 and web.reservations.memory_bytes == 64 << 20
    assert web.constraints == {"zone": "eu-1"}
    assert web.restart == "unless-stopped" and web.labels == {"team": "shop"}
    assert web.healthcheck == HealthcheckSpec(test=("CMD", "wget", "-q", "localhost:8080"),
                                              interval=90, timeout=0.5, retries=3,
                                              start_period=10)
    assert web.update_config == UpdateConfig(parallelism=2, delay=10, monitor=60,
                                             order=UpdateOrder.start_first,
                                             failure_action=FailureAction.rollback,
                                             max_failure_ratio=0.3)
    assert web.update_config.monitor_for(web.healthcheck) == 280  # 10 + 90 × 3 > 60
    assert web.rollback_config == UpdateConfig()
    assert web.http is not None and (web.http.host, web.http.port) == ("shop.example", 8080)
    assert [(v.source, v.target, v.read_only) for v in web.volumes] == [("data", "/data", True)]
    assert spec.volumes["data"].external and spec.volumes["data"].name == "data"
    assert spec.networks["front"].model_dump() == {  # created for the stack: STACK-KEY
        "name": "shop-front", "external": False, "subnet": None, "gateway": None}
    assert spec.networks["back"].model_dump() == {
        "name": "prod-back", "external": True, "subnet": "10.240.7.0/24",
        "gateway": "10.240.7.1"}
    db = spec.services["db"]
    assert db.fixed_ip and db.networks[0].ipv4_address == "10.240.7.10"
    assert not web.fixed_ip
    assert [spec.replica_name("web", i) for i in (1, 2, 3)] == [
        "shop-web-1", "shop-web-2", "shop-web-3"]


def test_defaults() -> None:
    text = "name: tiny\nservices: {web: {image: x, healthcheck: {test: 'true'}}}"
    spec = load_stack([ComposeFile("c.yaml", text)]).spec
    web = spec.services["web"]
    assert spec.name == "tiny"
    assert web.replicas == 1 and web.restart == "no" and web.command is None
    assert [n.name for n in web.networks] == ["default"]
    assert spec.networks == {"default": StackNetwork(name="tiny-default")}
    assert spec.volumes == {}
    assert web.limits.cores == 0 and web.limits.memory is None and web.limits.cpus is None
    assert web.limits.pids == DEFAULT_PIDS
    # Docker's healthcheck defaults
    assert web.healthcheck == HealthcheckSpec(test=("CMD-SHELL", "true"), interval=30,
                                              timeout=30, retries=3, start_period=0)
    # Compose's update_config defaults; monitor: the healthcheck's own time
    for config in (web.update_config, web.rollback_config):
        assert (config.parallelism, config.delay, config.failure_action, config.monitor,
                config.max_failure_ratio, config.order) == (
            1, 0, FailureAction.pause, None, 0, UpdateOrder.stop_first)
        assert config.monitor_for(web.healthcheck) == 90
        assert config.monitor_for(None) == 0


@pytest.mark.parametrize("healthcheck", ["{disable: true}", "{test: [NONE]}"])
def test_a_disabled_healthcheck_is_none(healthcheck: str) -> None:
    spec = load(f"services: {{web: {{image: x, healthcheck: {healthcheck}}}}}").spec  # type: ignore[attr-defined]
    assert spec.services["web"].healthcheck is None


def test_env_files_and_environment_precedence() -> None:
    env_files = [ComposeFile("one.env", "TAG=1\nREPL=2\n"),
                 ComposeFile("two.env", "TAG=2\nDERIVED=${REPL}0\n")]
    text = "services: {web: {image: 'x:${TAG}', deploy: {replicas: '${DERIVED}'}}}"
    web = load(text, env_files=env_files).spec.services["web"]  # type: ignore[attr-defined]
    assert (web.image, web.replicas) == ("x:2", 20)  # later env file wins
    web = load(text, env_files=env_files, environ={"TAG": "shell"}).spec.services["web"]  # type: ignore[attr-defined]
    assert web.image == "x:shell"  # the environment wins over env files


ALIAS_BOMB = "x-a: &a [l, l, l, l, l, l, l, l, l, l]\n" + "".join(
    f"x-{b}: &{b} [{', '.join([f'*{a}'] * 10)}]\n" for a, b in zip("abcdefg", "bcdefgh",
                                                                  strict=True))


@pytest.mark.parametrize(("text", "expected"), [
    (ALIAS_BOMB + "services: {web: {image: x}}",
     "compose.yaml: more than 100000 values once YAML aliases are expanded"),
    ("x-r: &r [*r]\nservices: {web: {image: x}}",
     "compose.yaml: more than 100000 values once YAML aliases are expanded"),
    ("services: {web: {image: x, command: '" + "x" * (1 << 20) + "'}}",
     f"compose.yaml: larger than {1 << 20} bytes"),
])
def test_oversized_files_are_refused_before_they_are_walked(text: str, expected: str) -> None:
    assert problems(text) == (expected,)


def test_version_is_ignored_with_a_warning() -> None:
    loaded = load("version: '3.8'\nservices: {web: {image: x}}")
    assert loaded.warnings == ("compose.yaml: `version` is obsolete and ignored",)  # type: ignore[attr-defined]


def test_missing_variables_warn_and_required_ones_fail() -> None:
    loaded = load("services: {web: {image: 'x${SUFFIX}'}}")
    assert loaded.warnings == (  # type: ignore[attr-defined]
        "services.web.image: variable SUFFIX is not set; using an empty string",)
    assert problems("services: {web: {image: '${IMAGE:?set IMAGE}'}}") == (
        "services.web.image: required variable IMAGE is missing a value: set IMAGE",)


def test_env_file_problems_name_the_service() -> None:
    found = problems("services: {web: {image: x, env_file: [a.env, b.env]}}",
                     read_file={"a.env": "1BAD\n"}.__getitem__)
    assert found == ("services.web.env_file[0]: a.env:1: expected KEY=VALUE, got '1BAD'",
                     "services.web.env_file[1]: cannot read 'b.env'")


def test_a_stack_needs_a_valid_name() -> None:
    with pytest.raises(ComposeError, match="the stack needs a name"):
        load_stack([ComposeFile("c.yaml", "services: {web: {image: x}}")])
    with pytest.raises(ComposeError, match="^name: must be 1-63 characters"):
        load_stack([ComposeFile("c.yaml", "services: {web: {image: x}}")], name="Bad_Name")


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("1m30s", 90), ("1h", 3600), ("500ms", 0.5), ("1.5s", 1.5), ("2m", 120),
    ("10", 10), (7, 7), ("1h2m3s", 3723), ("0s", 0), ("100us", 1e-4),
])
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1m 30s", "-1s", "m30", "1s2", True, -3,
                                  [], {}, None, "9" * 400, float("inf"), float("nan")])
def test_parse_duration_refuses(text: object) -> None:
    """With a ValueError (a 422 through pydantic), never another error: a list or an object in
    a stack deploy's `update_config.monitor` was a 500 (AttributeError, found by schemathesis)."""
    with pytest.raises(ValueError):
        parse_duration(text)  # type: ignore[arg-type]
