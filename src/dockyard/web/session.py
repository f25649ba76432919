"""Console sessions: a Dockyard token exchanged for a signed, expiring cookie, and CSRF.

    POST /login (token) ─▶ tokens.lookup ─▶ cookie dy_session = payload.HMAC(key, payload)
    every page ─▶ unseal (signature, expiry) ─▶ the token row still there (a revoked token
                  ends its sessions) ─▶ not logged out since ─▶ auth.Caller (same roles)
    every POST ─▶ field csrf_token == HMAC(key, "csrf:" + the session's nonce), else 403

The cookie holds no secret of the token: its id, its issue and expiry times, a random nonce,
and for an admin the project acted in. It is `HttpOnly`, `SameSite=Strict`, and `Secure` when
the request came over TLS. The signing key is cluster-wide (`meta` row `web_session_key`, made
at first use), so every server of one store accepts the same sessions. `/logout` records the
time in `meta` (`web_logout.TOKEN_ID`): every session of that token issued before it ends, in
every browser and on every server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, replace

from dockyard.errors import Forbidden, Unauthorized
from dockyard.server.auth import Caller
from dockyard.server.context import ServerContext
from dockyard.store import meta, tokens

COOKIE = "dy_session"
LOGIN_COOKIE = "dy_login"  # the login form's own CSRF value (double submit: no session yet)
CSRF_FIELD = "csrf_token"
TTL = 8 * 3600  # seconds a session lasts from login, whatever its use
KEY = "web_session_key"
LOGOUT = "web_logout."


@dataclass(frozen=True)
class Session:
    token_id: str
    issued: float  # epoch seconds
    expires: float
    nonce: str
    project_id: str | None = None  # an admin's chosen project; None: the token's own


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, data: bytes) -> str:
    return _b64(hmac.new(key, data, hashlib.sha256).digest())


def new_session(token_id: str, now: float) -> Session:
    return Session(token_id=token_id, issued=now, expires=now + TTL,
                   nonce=secrets.token_urlsafe(16))


def seal(key: bytes, session: Session) -> str:
    payload = _b64(json.dumps(asdict(session), separators=(",", ":")).encode())
    return f"{payload}.{_mac(key, payload.encode())}"


def unseal(key: bytes, value: str, now: float) -> Session | None:
    """The session in a cookie; None when it is forged, malformed or expired."""
    payload, _, mac = value.partition(".")
    if not mac or not hmac.compare_digest(mac, _mac(key, payload.encode())):
        return None
    try:
        session = Session(**json.loads(_unb64(payload)))
    except (ValueError, TypeError, binascii.Error):
        return None
    return session if session.issued <= now < session.expires else None


def csrf_token(key: bytes, session: Session) -> str:
    return _mac(key, b"csrf:" + session.nonce.encode())


def check_csrf(expected: str, given: str | None) -> None:
    if not given or not hmac.compare_digest(expected, given):
        raise Forbidden("the form's csrf_token is missing or wrong: reload the page and "
                        "try again")


def session_key(ctx: ServerContext) -> bytes:
    """The cluster's signing key, made when the first server starts (read once per app, as
    the store's other first-start rows are made in `create_app`)."""
    with ctx.db.session() as sess:
        value = meta.get(sess, KEY)
        if value is None:
            value = secrets.token_hex(32)
            meta.put(sess, KEY, value)
    return bytes.fromhex(value)


def login(ctx: ServerContext, token: str, now: float) -> Session:
    """A session of a user token; 401 for an unknown token, 403 for a host's."""
    with ctx.db.read() as sess:
        row = tokens.lookup(sess, token.strip()) if token.strip() else None
        if row is None:
            raise Unauthorized("this token is not valid")
        if row.role not in ("admin", "member") or row.project_id is None:
            raise Forbidden("a host token cannot log in to the console")
        return new_session(row.id, now)


def caller_of(ctx: ServerContext, session: Session) -> Caller | None:
    """The session's caller, as `auth.user` would build it for the token; None when the token
    was revoked or logged out after the session began."""
    with ctx.db.read() as sess:
        row = tokens.get(sess, session.token_id)
        if row is None or row.role not in ("admin", "member") or row.project_id is None:
            return None
        out = meta.get(sess, LOGOUT + row.id)
        if out is not None and session.issued <= float(out):
            return None
        project = row.project_id
        if session.project_id is not None and row.role == "admin":
            project = session.project_id
        return Caller(role=row.role, project_id=project, host_name=None, token_id=row.id)


def logout(ctx: ServerContext, session: Session, now: float) -> None:
    with ctx.db.session() as sess:
        meta.put(sess, LOGOUT + session.token_id, repr(now))


def in_project(session: Session, project_id: str) -> Session:
    return replace(session, project_id=project_id)


def now() -> float:
    return time.time()
