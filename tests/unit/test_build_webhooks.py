"""Push webhooks, pure: each format's signature (good, bad, missing; checked on the raw bytes)
and parsing, the replay keys, a Dockerfile's base images and the build queue's plan."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from dockyard.builds import dockerfile, queue, webhooks
from dockyard.errors import MalformedRequest, Unauthorized

SECRET = "s3cret"
SHA = "3f1c2a9d0b8e7f6a5c4d3e2f1a0b9c8d7e6f5a4b"


def _payload(ref: str = "refs/heads/main", after: str = SHA) -> bytes:
    return json.dumps({"ref": ref, "before": "0" * 40, "after": after,
                       "head_commit": {"id": after, "message": "fix the thing\n",
                                       "author": {"name": "Ada"}},
                       "commits": [{"id": after, "message": "fix the thing\n",
                                    "author": {"name": "Ada"}}]}).encode()


def _gitlab_payload(ref: str = "refs/heads/main") -> bytes:
    return json.dumps({"object_kind": "push", "ref": ref, "before": "0" * 40, "after": SHA,
                       "checkout_sha": SHA,
                       "commits": [{"id": SHA, "message": "fix the thing",
                                    "author": {"name": "Ada", "email": "a@x"}}]}).encode()


def _hex(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gitea(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Gitea-Signature": _hex(body, secret), "X-Gitea-Event": "push",
            "X-Gitea-Delivery": "d-1"}


def github(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature-256": f"sha256={_hex(body, secret)}", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "g-1"}


def gitlab(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Gitlab-Token": secret, "X-Gitlab-Event": "Push Hook"}


FORMATS = [("gitea", gitea, _payload), ("github", github, _payload),
           ("gitlab", gitlab, _gitlab_payload)]


@pytest.mark.parametrize(("kind", "headers", "payload"), FORMATS)
def test_good_signature_then_the_push(kind: str, headers: object, payload: object) -> None:
    body = payload()  # type: ignore[operator]
    h = headers(body)  # type: ignore[operator]
    assert webhooks.verify(h, body, SECRET) == kind
    push = webhooks.parse_push(h, body)
    assert push == webhooks.Push(branch="main", ref="refs/heads/main", commit=SHA,
                                 author="Ada", message="fix the thing")


@pytest.mark.parametrize(("kind", "headers", "payload"), FORMATS)
def test_bad_signature_is_401(kind: str, headers: object, payload: object) -> None:
    body = payload()  # type: ignore[operator]
    wrong = headers(body, "another secret")  # type: ignore[operator]
    with pytest.raises(Unauthorized, match="bad signature"):
        webhooks.verify(wrong, body, SECRET)
    if kind != "gitlab":  # GitLab sends its token, not a signature of the body
        signed = headers(body)  # type: ignore[operator]
        with pytest.raises(Unauthorized):  # the body was changed on the way
            webhooks.verify(signed, body + b" ", SECRET)


def test_missing_signature_is_401() -> None:
    body = _payload()
    with pytest.raises(Unauthorized, match="no signature"):
        webhooks.verify({"X-Gitea-Event": "push", "Content-Type": "application/json"}, body,
                        SECRET)


def test_signature_headers_are_case_insensitive_and_forgejo_counts() -> None:
    body = _payload()
    assert webhooks.verify({"x-forgejo-signature": _hex(body).upper()}, body, SECRET) == "gitea"


def test_the_signature_is_checked_before_parsing() -> None:
    """A body that is not JSON under a bad signature is a 401, not a 400."""
    with pytest.raises(Unauthorized):
        webhooks.verify({"X-Gitea-Signature": "00"}, b"{not json", SECRET)


def test_other_events_and_deleted_branches_are_ignored() -> None:
    body = _payload()
    ping = webhooks.parse_push({**github(body), "X-GitHub-Event": "ping"}, body)
    assert isinstance(ping, webhooks.Ignored) and "ping" in ping.reason
    gone = _payload(after="0" * 40)
    assert isinstance(webhooks.parse_push(gitea(gone), gone), webhooks.Ignored)
    tag = webhooks.parse_push(gitea(_payload("refs/tags/v1")), _payload("refs/tags/v1"))
    assert isinstance(tag, webhooks.Push) and tag.branch is None


def test_another_branch_is_parsed_as_that_branch() -> None:
    body = _payload("refs/heads/feature/x")
    push = webhooks.parse_push(gitea(body), body)
    assert isinstance(push, webhooks.Push) and push.branch == "feature/x"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"ref": "refs/heads/main"}',
                                  json.dumps({"ref": "refs/heads/main",
                                              "after": "zz; rm -rf /"}).encode()])
def test_a_body_that_is_no_push_is_400(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        webhooks.parse_push(gitea(body), body)


def test_replay_keys_cover_the_delivery_id_and_the_body() -> None:
    body = _payload()
    first = webhooks.delivery_keys(gitea(body), body)
    assert "id:d-1" in first
    # the same signed body under a new delivery id still shares its body key
    again = webhooks.delivery_keys({**gitea(body), "X-Gitea-Delivery": "d-2"}, body)
    assert set(first) & set(again)
    other = _payload(after="a" * 40)
    keys = webhooks.delivery_keys({**gitea(other), "X-Gitea-Delivery": "d-3"}, other)
    assert not set(keys) & set(first)


def test_base_images() -> None:
    text = ("ARG BASE=reg:5000/dockyard/busybox:latest\n"
            "# a comment\n"
            "FROM ${BASE} AS build\n"
            "RUN echo hi \\\n  && true\n"
            "FROM --platform=linux/amd64 reg:5000/p/tools:1\n"
            "COPY --from=build /x /x\n"
            "FROM build\n"
            "FROM scratch\n")
    assert dockerfile.base_images(text) == ["reg:5000/dockyard/busybox:latest",
                                            "reg:5000/p/tools:1"]


def test_base_image_rules() -> None:
    assert dockerfile.base_problem("reg:5000/dockyard/busybox:1", "reg:5000", []) is None
    outside = dockerfile.base_problem("busybox:latest", "reg:5000", [])
    assert outside is not None and "busybox:latest" in outside and "registry" in outside
    theirs = dockerfile.base_problem("reg:5000/other/app:1", "reg:5000", ["reg:5000/other/"])
    assert theirs is not None and "another project" in theirs


def test_queue_one_per_repository_newest_of_a_ref_wins() -> None:
    q = [queue.Queued("b1", "r1", "main", 1), queue.Queued("b2", "r1", "main", 2),
         queue.Queued("b3", "r1", "main", 3), queue.Queued("c1", "r2", "main", 4),
         queue.Queued("d1", "r3", "main", 5)]
    plan = queue.plan(q, running_repos={"r2"})
    assert plan.superseded == {"b1": "b2", "b2": "b3"}
    assert plan.start == ["b3", "d1"]  # r2 is busy: c1 waits


def test_queue_two_refs_of_one_repository_run_one_after_the_other() -> None:
    q = [queue.Queued("a", "r1", "main", 1), queue.Queued("b", "r1", "v1.0", 2)]
    plan = queue.plan(q, running_repos=set())
    assert plan.start == ["a"] and plan.superseded == {}
