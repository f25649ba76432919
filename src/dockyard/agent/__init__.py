"""The Dockyard agent: converges this host's instances to the server's desired state."""
