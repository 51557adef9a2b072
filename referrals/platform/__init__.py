"""Platform pieces every layer may use: errors, settings, logging, metrics, money and time.

The bottom layer: it imports nothing else of the project."""
