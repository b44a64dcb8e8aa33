"""The agents service: agents, their lifecycle and deployments, calls and transcripts."""
