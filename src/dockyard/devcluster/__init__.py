"""A real multi-host Dockyard cluster on one machine (see README.md)."""
