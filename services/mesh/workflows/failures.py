"""How a step fails: with a code (the error record's `code`, what a retry policy's
`retryable_errors` names) and a message."""

from __future__ import annotations


class StepFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# What a run's walk passes up: (step id, code, message) of the step that failed, or None.
Failure = tuple[str, str, str] | None
