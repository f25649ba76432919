"""Stacks' pure logic (README.md): the rollout planner. No store, server, agent or adapters."""
