"""The agents service's servicers: AgentService and CallService."""
