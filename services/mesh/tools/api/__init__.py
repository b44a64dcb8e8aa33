"""The tools service's servicer (ToolService)."""
