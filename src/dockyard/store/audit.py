"""The audit log: one row per mutating API call, written after the reply's status is known.

Rows are append-only; nothing in Dockyard updates or deletes them (a backup keeps them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from dockyard.store import rows
from dockyard.store.tables import Base, TokenRow, utcnow
from dockyard.store.tokens import hash_token


class AuditRow(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    token_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    token_description: Mapped[str] = mapped_column(String(255), default="")
    role: Mapped[str] = mapped_column(String(16))  # admin | member | host | anonymous
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(255), default="")


@dataclass(frozen=True)
class Call:
    """One finished mutating request, as the middleware saw it."""
    token: str | None
    method: str
    path: str
    status: int
    target: str


def record(sess: Session, call: Call) -> None:
    """Append `call`; the caller is resolved from its token (an unknown or missing token is
    recorded as `anonymous`, so refused attempts are logged too)."""
    row = sess.scalar(select(TokenRow).where(TokenRow.hash == hash_token(call.token))) \
        if call.token else None
    _append(sess, row, call)


def record_for(sess: Session, token_id: str | None, call: Call) -> None:
    """Append `call` of the token `token_id` (the web console's sessions know the token by
    its id, never its secret); None or a gone token: `anonymous`."""
    _append(sess, sess.get(TokenRow, token_id) if token_id else None, call)


def _append(sess: Session, row: TokenRow | None, call: Call) -> None:
    sess.add(AuditRow(token_id=row.id if row else None,
                      token_description=row.description[:255] if row else "",
                      role=row.role if row else "anonymous",
                      project_id=row.project_id if row else None,
                      method=call.method, path=call.path[:1024], status=call.status,
                      target=call.target[:255]))


def page(sess: Session, after: int, limit: int) -> tuple[list[AuditRow], bool]:
    """Rows with id > after, oldest first; the bool says whether more follow."""
    return rows.after_id(sess, AuditRow, after, limit, {})
