"""The `dockyard` command line (Typer + Rich)."""
