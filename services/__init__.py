"""The three services: attribution, rewards, notifications."""
