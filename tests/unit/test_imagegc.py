"""Image GC selection: unused images beyond the budget, oldest first."""

from __future__ import annotations

from dockyard.adapters.docker_engine import ImageRecord
from dockyard.agent.imagegc import select_victims


def _img(name: str, size: int, created: float) -> ImageRecord:
    return ImageRecord(id=name, tags=[f"{name}:latest"], size=size, created=created)


def test_nothing_goes_within_budget() -> None:
    images = [_img("a", 10, 1), _img("b", 10, 2)]
    assert select_victims(images, set(), 20) == []


def test_oldest_unused_first_until_under_budget() -> None:
    images = [_img("new", 10, 3), _img("old", 10, 1), _img("mid", 10, 2)]
    assert [v.id for v in select_victims(images, set(), 15)] == ["old", "mid"]


def test_used_images_are_never_chosen() -> None:
    images = [_img("old", 50, 1), _img("mid", 10, 2), _img("new", 10, 3)]
    assert [v.id for v in select_victims(images, {"old"}, 55)] == ["mid", "new"]
    assert [v.id for v in select_victims(images, {"old"}, 60)] == ["mid"]
    assert [v.id for v in select_victims(images, {"old", "mid", "new"}, 0)] == []


def test_zero_budget_removes_every_unused_image() -> None:
    images = [_img("a", 1, 1), _img("b", 1, 2)]
    assert [v.id for v in select_victims(images, {"b"}, 0)] == ["a"]
