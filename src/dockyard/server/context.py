"""What every request handler shares: settings, the database, the notifier, agent access,
the registry."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.config import ServerSettings
from dockyard.server.agent_proxy import AgentProxy
from dockyard.server.notifier import Notifier
from dockyard.server.registry import RegistryClient
from dockyard.store.db import Database


@dataclass
class ServerContext:
    settings: ServerSettings
    db: Database
    notifier: Notifier
    agents: AgentProxy
    registry: RegistryClient
