"""Cluster-wide facts kept in the `meta` table (the cluster uuid)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.store.revision import NETWORKS_KEY
from dockyard.store.tables import Meta

NETWORKS_REVISION = NETWORKS_KEY  # revision of the last network create/delete


def put(sess: Session, key: str, value: str) -> None:
    row = sess.get(Meta, key)
    if row is None:
        sess.add(Meta(key=key, value=value))
    else:
        row.value = value
    sess.flush()


def get(sess: Session, key: str) -> str | None:
    return sess.scalar(select(Meta.value).where(Meta.key == key))


def cluster_id(sess: Session) -> str:
    """The cluster's uuid, created on first use."""
    value = get(sess, "cluster")
    if value is None:
        value = str(uuid.uuid4())
        sess.add(Meta(key="cluster", value=value))
        sess.flush()
    return value
