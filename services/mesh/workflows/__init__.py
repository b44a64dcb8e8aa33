"""The workflows service: definitions, durable executions on DBOS, live progress."""
