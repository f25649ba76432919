"""The Dockyard server: REST API, agent feed (watch), the ledger's writers and operations."""
