"""The tools service: tools (http, builtin, mcp), their executions and stats."""
