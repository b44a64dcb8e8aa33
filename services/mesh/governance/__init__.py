"""Governance: Cedar policies, decisions, dispatch, rate limits, budgets, decision webhooks."""
