"""Live events over WebSocket."""
