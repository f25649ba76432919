"""Push webhooks of Gitea/Forgejo, GitHub and GitLab: signature first, then the payload.

    raw bytes + headers ─▶ verify (before any parsing; constant time) ─▶ Unauthorized
                       ─▶ parse_push ─▶ Push (branch, commit, author, message) | Ignored

Signatures: Gitea/Forgejo `X-Gitea-Signature` / `X-Forgejo-Signature` = hex HMAC-SHA256 of the
body; GitHub `X-Hub-Signature-256` = `sha256=` + that hex; GitLab sends the secret itself in
`X-Gitlab-Token`. Every comparison is `hmac.compare_digest`.

The delivery id header is not covered by the signature, so replays are also recognised by
the body's digest (`delivery_keys`): a captured body sent again under a new id is dropped too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from dockyard.errors import MalformedRequest, Unauthorized

ZERO_SHA = "0" * 40


@dataclass(frozen=True)
class Push:
    branch: str | None  # None: a tag
    ref: str
    commit: str
    author: str | None
    message: str | None


@dataclass(frozen=True)
class Ignored:
    reason: str


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def sender(headers: Mapping[str, str]) -> str:
    """gitea | github | gitlab, by the signature header present; 401 when none is."""
    h = _lower(headers)
    if "x-gitea-signature" in h or "x-forgejo-signature" in h:
        return "gitea"
    if "x-hub-signature-256" in h:
        return "github"
    if "x-gitlab-token" in h:
        return "gitlab"
    raise Unauthorized("webhook: no signature (X-Gitea-Signature, X-Hub-Signature-256 or "
                       "X-Gitlab-Token)")


def _hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The Gitea signature of `body` (what a sender computes)."""
    return _hex_hmac(secret, body)


def verify(headers: Mapping[str, str], body: bytes, secret: str) -> str:
    """The sender's kind when the signature of the raw `body` is right; 401 otherwise."""
    h = _lower(headers)
    kind = sender(h)
    if kind == "gitea":
        given = h.get("x-gitea-signature") or h.get("x-forgejo-signature") or ""
        ok = hmac.compare_digest(given.strip().lower().encode(),
                                 _hex_hmac(secret, body).encode())
    elif kind == "github":
        ok = hmac.compare_digest(h["x-hub-signature-256"].strip().encode(),
                                 f"sha256={_hex_hmac(secret, body)}".encode())
    else:
        ok = hmac.compare_digest(h["x-gitlab-token"].encode(), secret.encode())
    if not ok:
        raise Unauthorized("webhook: bad signature")
    return kind


def delivery_keys(headers: Mapping[str, str], body: bytes) -> list[str]:
    """The keys a replay is recognised by: the sender's delivery id (when it sends one) and
    the body's SHA-256."""
    h = _lower(headers)
    keys = [f"body:{hashlib.sha256(body).hexdigest()}"]
    for name in ("x-gitea-delivery", "x-forgejo-delivery", "x-github-delivery",
                 "x-gitlab-event-uuid", "x-gitlab-webhook-uuid"):
        if h.get(name):
            keys.append(f"id:{h[name][:128]}")
            break
    return keys


def _event(kind: str, h: dict[str, str]) -> str:
    if kind == "gitea":
        return h.get("x-gitea-event") or h.get("x-forgejo-event") or "push"
    if kind == "github":
        return h.get("x-github-event") or "push"
    return "push" if h.get("x-gitlab-event", "Push Hook") in ("Push Hook", "Tag Push Hook") \
        else h["x-gitlab-event"]


def _head(payload: dict[str, object], commit: str) -> tuple[str | None, str | None]:
    """Author and message of the pushed head commit."""
    head = payload.get("head_commit")
    if not isinstance(head, dict):
        commits = payload.get("commits")
        head = next((c for c in commits if isinstance(c, dict) and c.get("id") == commit),
                    None) if isinstance(commits, list) else None
    if not isinstance(head, dict):
        return None, None
    author = head.get("author")
    name = author.get("name") if isinstance(author, dict) else None
    message = head.get("message")
    return (str(name)[:255] if name else None,
            str(message).strip()[:1024] if message else None)


def parse_push(headers: Mapping[str, str], body: bytes) -> Push | Ignored:
    """The push a verified body announces; Ignored for other events or a deleted branch;
    400 for a body that is not a push payload."""
    h = _lower(headers)
    kind = sender(h)
    event = _event(kind, h)
    if event != "push":
        return Ignored(f"event {event!r} is not a push")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedRequest(f"webhook: the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise MalformedRequest("webhook: the body is not a JSON object")
    ref = payload.get("ref")
    commit = payload.get("checkout_sha") if kind == "gitlab" else None
    commit = commit or payload.get("after")
    if not isinstance(ref, str) or not isinstance(commit, str):
        raise MalformedRequest("webhook: a push needs `ref` and `after`")
    if commit == ZERO_SHA or payload.get("deleted") is True:
        return Ignored(f"{ref} was deleted")
    if not (7 <= len(commit) <= 64 and all(c in "0123456789abcdef" for c in commit.lower())):
        raise MalformedRequest(f"webhook: {commit!r} is not a commit id")
    branch = ref.removeprefix("refs/heads/") if ref.startswith("refs/heads/") else None
    author, message = _head(payload, commit)
    return Push(branch=branch, ref=ref, commit=commit.lower(), author=author, message=message)
