"""Notifications: thank-you, status and "refer again" messages in real time."""
