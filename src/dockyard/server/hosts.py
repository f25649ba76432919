"""Hosts as the server manages them: add (row + token), drain, remove, health.

Health is computed at read time from `last_heartbeat` (`placement.host_is_up`), never trusted
from a stored flag: a host is `down` once its agent has been silent for `heartbeat_timeout`,
and its instances then show `unknown` until it is back. The agent's watch is its heartbeat
(each watch request refreshes `last_heartbeat`), so the long-poll timeout is derived from the
heartbeat timeout (`watch_timeout`).

Transitions are recorded once each with `note_host_state`: a conditional UPDATE of the stored
`hosts.state` decides which caller (feed, alert loop, another server) records the event.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from dockyard.config import ServerSettings
from dockyard.errors import Conflict
from dockyard.model.host import Host, HostAdded, HostCreate, HostState
from dockyard.model.instance import Instance, InstanceState
from dockyard.server.context import FeedCounter
from dockyard.server.placement import effective_labels, host_is_up
from dockyard.store import hosts, ledger, records, tokens
from dockyard.store.events import record as record_event
from dockyard.store.tables import HostRow, InstanceRow


def watch_timeout(settings: ServerSettings) -> float:
    """How long an idle watch is held. Two thirds of the heartbeat timeout leaves a third as
    margin for the next watch to arrive; at the default 30 s that is 20 s, so an idle agent
    makes at most 2 requests in any 30 s."""
    return max(0.5, min(settings.watch_timeout, settings.heartbeat_timeout * 2 / 3))


def note_host_state(sess: Session, row: HostRow, up: bool, reason: str) -> bool:
    """Record `host_up`/`host_down` if this call moves the stored state; True if it did."""
    old, new = ("down", "up") if up else ("up", "down")
    if not hosts.set_state(sess, row, old, new):
        return False
    record_event(sess, None, f"host_{new}", reason, row.name)
    return True


def touch(sess: Session, row: HostRow) -> bool:
    """A sign of life from the host's agent; True if the host came back."""
    row.last_heartbeat = datetime.now(UTC)
    return note_host_state(sess, row, True, "the agent is back")


def host_view(sess: Session, row: HostRow, settings: ServerSettings,
              counter: FeedCounter) -> Host:
    model = records.host_model(sess, row)
    model.state = HostState.up if host_is_up(row, settings.heartbeat_timeout) \
        else HostState.down
    model.draining = row.draining
    model.labels = effective_labels(row)
    model.feed_requests = counter.of(row.name)
    return model


def instance_view(sess: Session, row: InstanceRow, settings: ServerSettings,
                  pools: dict[str, str] | None = None) -> Instance:
    """The instance as stored, except `unknown` while its host is down (`pools`: see
    `records.instance_model`)."""
    model = records.instance_model(sess, row, pools)
    host = hosts.get(sess, row.host_id)
    if host is not None and not host_is_up(host, settings.heartbeat_timeout):
        model.state = InstanceState.unknown
    return model


def add(sess: Session, spec: HostCreate, settings: ServerSettings,
        counter: FeedCounter) -> HostAdded:
    if hosts.exists(sess, spec.name):
        raise Conflict(f"host {spec.name!r} already exists")
    row = hosts.add(sess, spec.name, spec.labels)
    tokens.revoke_host_tokens(sess, spec.name)
    token = tokens.mint(sess, "host", host_name=spec.name, description=f"host {spec.name}")
    record_event(sess, None, "host_added", "host added; waiting for its agent", spec.name)
    view = host_view(sess, row, settings, counter)
    return HostAdded(**view.model_dump(), token=token)


def set_draining(sess: Session, ref: str, draining: bool) -> HostRow:
    row = records.host_by_ref(sess, ref)
    if row.draining != draining:
        row.draining = draining
        row.version += 1  # a placement in flight on this host retries and sees the flag
        record_event(sess, None, "host_drain" if draining else "host_undrain",
                     "no new placements" if draining else "placements allowed again",
                     row.name)
    return row


def remove(sess: Session, ref: str) -> str:
    row = records.host_by_ref(sess, ref)
    count = ledger.instance_count(sess, row.id)
    if count:
        raise Conflict(f"host {row.name} still has {count} instance(s); move or delete "
                       "them first")
    volumes = hosts.volume_count(sess, row.id)
    if volumes:
        raise Conflict(f"host {row.name} still holds {volumes} volume(s); delete them first")
    tokens.revoke_host_tokens(sess, row.name)
    record_event(sess, None, "host_removed", "host removed; its tokens are revoked", row.name)
    hosts.delete(sess, row)
    return row.name
