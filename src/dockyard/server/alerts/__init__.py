"""Alerts: pure rules, the evaluation loop, webhook delivery (see README.md)."""
