"""Compose files → `StackSpec` (README.md). Pure: no store, server, agent or adapters."""

from dockyard.compose.loader import ComposeError, ComposeFile, LoadedStack, load_stack

__all__ = ["ComposeError", "ComposeFile", "LoadedStack", "load_stack"]
