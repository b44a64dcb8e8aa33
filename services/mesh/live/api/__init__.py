"""The live service's servicer (LiveService); the WebSocket listener is mesh/live/hub.py."""
