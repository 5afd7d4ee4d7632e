"""Alerts: rules, evaluation, routing and notifications (docs/alerts.md)."""
