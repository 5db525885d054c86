"""Notifications: the outbox relay, webhooks (http callbacks) and websocket subscribers (/ws)."""
