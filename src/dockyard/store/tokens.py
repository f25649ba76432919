"""Bearer tokens, stored as SHA-256 hashes: the plain token is shown once and never kept."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, event, func, select
from sqlalchemy.orm import Session

from dockyard.model.ids import new_id
from dockyard.store.tables import TokenRow

PREFIX = "dy_"


class _Revocations:
    """How many revocations this process has made (`epoch`): a cache of verified tokens
    (`server/auth.py`) drops what it verified before a revocation. Counted when the delete is
    issued and again when its transaction commits, so a verification that ran in between
    (and still saw the row) is dropped too."""

    epoch = 0

    @classmethod
    def note(cls, sess: Session) -> None:
        cls.epoch += 1
        event.listen(sess, "after_commit", lambda _sess: cls._bump(), once=True)

    @classmethod
    def _bump(cls) -> None:
        cls.epoch += 1


def revocation_epoch() -> int:
    return _Revocations.epoch


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mint(sess: Session, role: str, *, project_id: str | None = None,
         host_name: str | None = None, description: str = "") -> str:
    token = PREFIX + secrets.token_urlsafe(32)
    sess.add(TokenRow(id=new_id(), hash=hash_token(token), role=role, project_id=project_id,
                      host_name=host_name, description=description))
    sess.flush()
    return token


def get(sess: Session, token_id: str) -> TokenRow | None:
    return sess.get(TokenRow, token_id)


def admin_count(sess: Session) -> int:
    return sess.scalar(select(func.count()).select_from(TokenRow)
                       .where(TokenRow.role == "admin")) or 0


def lookup(sess: Session, token: str) -> TokenRow | None:
    return lookup_hash(sess, hash_token(token))


def lookup_hash(sess: Session, digest: str) -> TokenRow | None:
    return sess.scalar(select(TokenRow).where(TokenRow.hash == digest))


def revoke_host_tokens(sess: Session, host_name: str) -> None:
    _Revocations.note(sess)
    sess.execute(delete(TokenRow).where(TokenRow.role == "host",
                                        TokenRow.host_name == host_name))


def user_tokens(sess: Session, project_id: str | None = None) -> list[TokenRow]:
    """Admin and member tokens (not hosts'), oldest first, of one project or all."""
    query = select(TokenRow).where(TokenRow.role.in_(("admin", "member")))
    if project_id is not None:
        query = query.where(TokenRow.project_id == project_id)
    return list(sess.scalars(query.order_by(TokenRow.created_at, TokenRow.id)))


def revoke(sess: Session, token_id: str) -> TokenRow | None:
    """Delete a user token; it answers 401 from the next request on (the row is gone)."""
    row = sess.scalar(select(TokenRow).where(TokenRow.id == token_id,
                                             TokenRow.role.in_(("admin", "member"))))
    if row is not None:
        _Revocations.note(sess)
        sess.delete(row)
        sess.flush()
    return row
