"""Volumes as a resource: create/list/show/delete, auto-creation by launch, data that survives
a restart, and deletion refused while an instance mounts the volume."""

from __future__ import annotations

import docker
import pytest

from dockyard.errors import Conflict, InvalidRequest, NotFound
from tests.integration.dockyard_env import IMAGE, Dockyard


def docker_volume_exists(name: str) -> bool:
    client = docker.from_env()
    try:
        return any(v.name == name for v in client.volumes.list())
    finally:
        client.close()


def remove_docker_volume(name: str) -> None:
    """Safety net for a failed test: never leave a Docker volume behind."""
    client = docker.from_env()
    try:
        for vol in client.volumes.list(filters={"name": name}):
            if vol.name == name:
                vol.remove(force=True)
    finally:
        client.close()


def test_create_list_show_delete(dy: Dockyard) -> None:
    vol = dy.ok("volume", "create", "vol-basic", "--json").json()
    try:
        assert (vol["name"], vol["host"], vol["attached_to"]) == ("vol-basic", None, [])
        assert vol["docker_name"] == f"dyv-{vol['id']}" and vol["project"] == "default"
        with dy.api() as api:
            assert dy.ok("volume", "list", "--json").json() == api.get("/v1/volumes")
            assert dy.ok("volume", "show", "vol-basic", "--json").json() == \
                api.get("/v1/volumes/vol-basic")
            assert api.get(f"/v1/volumes/{vol['id']}") == vol
            with pytest.raises(Conflict) as dup:
                api.post("/v1/volumes", {"name": "vol-basic"})
            assert dup.value.status == 409
            with pytest.raises(InvalidRequest) as bad:
                api.post("/v1/volumes", {"name": "Bad Name"})
            assert bad.value.status == 422
            with pytest.raises(NotFound) as unknown:
                api.get("/v1/volumes/no-such-volume")
            assert unknown.value.status == 404
        assert "vol-basic" in dy.ok("volume", "list").out
        result = dy.cli("volume", "create", "vol-basic")
        assert result.code != 0 and "already exists" in result.err
        result = dy.cli("volume", "create", "-bad")
        assert result.code != 0 and result.err.strip()
        result = dy.cli("volume", "show", "no-such-volume")
        assert result.code != 0 and "not found" in result.err
        dy.ok("volume", "delete", "vol-basic")
        assert dy.cli("volume", "show", "vol-basic").code != 0
        assert dy.cli("volume", "delete", "vol-basic").code != 0
    finally:
        dy.cli("volume", "delete", "vol-basic")


def test_launch_creates_volume_data_survives_restart_delete_refused_while_attached(
        dy: Dockyard) -> None:
    docker_name = ""
    try:
        dy.ok("launch", IMAGE, "voluser", "-v", "vol-auto:/data")
        vol = dy.ok("volume", "show", "vol-auto", "--json").json()
        docker_name = vol["docker_name"]
        assert (vol["host"], vol["attached_to"]) == ("local", ["voluser"])
        assert docker_volume_exists(docker_name)
        inst = dy.ok("show", "voluser", "--json").json()
        assert inst["volumes"][0]["source"] == "vol-auto"  # the user's name, not Docker's
        dy.ok("exec", "voluser", "--", "sh", "-c", "echo kept > /data/f")
        dy.ok("restart", "voluser")
        assert dy.ok("exec", "voluser", "--", "cat", "/data/f").out.strip() == "kept"

        result = dy.cli("volume", "delete", "vol-auto")
        assert result.code != 0 and "attached" in result.err and "voluser" in result.err
        assert docker_volume_exists(docker_name)

        dy.ok("delete", "voluser", "--force")
        assert dy.ok("volume", "show", "vol-auto", "--json").json()["attached_to"] == []
        dy.ok("volume", "delete", "vol-auto")
        assert not docker_volume_exists(docker_name)
    finally:
        dy.cli("delete", "voluser", "--force")
        dy.cli("volume", "delete", "vol-auto")
        if docker_name:
            remove_docker_volume(docker_name)
