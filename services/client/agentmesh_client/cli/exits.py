"""The exit codes of `agentmesh`, one per kind of failure, so that a script can tell them apart
(docs/cli.md lists them):

    0    done
    1    the command ran and what it ran failed (a workflow ended FAILED, an agent's call
         failed), or an error of no other kind
    2    usage: an unknown command or option, a missing argument
    3    not logged in, or the session expired (401): `agentmesh login`
    4    permission denied (403)
    5    not found (404)
    6    conflict (409): it exists already, or changed meanwhile
    7    invalid input (400, 413; a file that does not parse)
    8    rate limited (429)
    9    the mesh is unreachable
    10   the mesh failed (5xx)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

from agentmesh_client import errors

OK, FAILED, USAGE = 0, 1, 2
UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND, CONFLICT = 3, 4, 5, 6
INVALID, RATE_LIMITED, UNREACHABLE, SERVER_ERROR = 7, 8, 9, 10
INTERRUPTED = 130

_BY_CLASS: list[tuple[type[Exception], int]] = [
    (errors.Unauthenticated, UNAUTHENTICATED), (errors.PermissionDenied, PERMISSION_DENIED),
    (errors.NotFound, NOT_FOUND), (errors.Conflict, CONFLICT),
    (errors.InvalidArgument, INVALID), (errors.PayloadTooLarge, INVALID),
    (errors.RateLimited, RATE_LIMITED), (errors.ServerError, SERVER_ERROR),
    (errors.Unreachable, UNREACHABLE),
]


def code_of(error: Exception) -> int:
    for kind, code in _BY_CLASS:
        if isinstance(error, kind):
            return code
    return FAILED
