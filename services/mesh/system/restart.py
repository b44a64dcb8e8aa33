"""The channel between the system service and the supervisor of `agentmesh up`: a directory.

`agentmesh up` makes `DATA_DIR/control/` and tells every child where it is
(`AGENTMESH_SUPERVISOR_CONTROL_DIR`), with `topology.json` saying which process hosts which
services. `POST /api/v1/system/restart/{service}` writes `restart-<service>.json` there (written
whole, then renamed into place); the supervisor looks every half second, renames the request to
`restarting-<service>.json`, stops the process hosting the service gracefully (SIGTERM: health
goes NOT_SERVING, in-flight calls get the grace period), starts it again, waits for gRPC health
SERVING and removes the marker. While either file exists, another restart of that service is
refused (FAILED_PRECONDITION). Only local processes (the same user, the same data directory) can
write there: no network endpoint is opened for it.

In the shared shape (the default) one process hosts every service, so restarting one restarts
that process and with it the others (about as long as `agentmesh up` takes to start them);
`agentmesh up --isolation process` restarts only the named service. In Kubernetes there is no
supervisor: `kubectl rollout restart deployment/<release>-<service>` (docs/deployment.md).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

TOPOLOGY = "topology.json"


def _write(path: Path, data: dict) -> None:
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def control_dir(settings) -> Path | None:
    """The supervisor's control directory, None when no supervisor runs the platform."""
    path = settings.supervisor_control_dir
    return Path(path) if path else None


def request_path(control: Path, service: str) -> Path:
    return control / f"restart-{service}.json"


def marker_path(control: Path, service: str) -> Path:
    return control / f"restarting-{service}.json"


def in_progress(control: Path, service: str) -> bool:
    return request_path(control, service).exists() or marker_path(control, service).exists()


def request(control: Path, service: str, reason: str, grace_seconds: float, by: str) -> datetime:
    now = datetime.now(UTC)
    _write(request_path(control, service), {"service": service, "reason": reason,
                                             "grace_seconds": grace_seconds, "by": by,
                                             "requested_at": now.isoformat()})
    return now


def process_of(control: Path, service: str) -> list[str]:
    """The services sharing `service`'s process (itself included), from the topology."""
    try:
        groups = json.loads((control / TOPOLOGY).read_text())
    except (OSError, ValueError):
        return [service]
    return next((group for group in groups if service in group), [service])


# ---- the supervisor's side ------------------------------------------------------------------


def prepare(control: Path, groups: list[list[str]]) -> None:
    control.mkdir(parents=True, exist_ok=True)
    for stale in list(control.glob("restart-*.json")) + list(control.glob("restarting-*.json")):
        stale.unlink(missing_ok=True)
    _write(control / TOPOLOGY, groups)  # type: ignore[arg-type]


def take(control: Path) -> list[dict]:
    """The pending requests, each moved to its in-progress marker."""
    taken = []
    for path in sorted(control.glob("restart-*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        service = str(data.get("service", ""))
        os.replace(path, marker_path(control, service))
        taken.append(data)
    return taken


def done(control: Path, service: str) -> None:
    marker_path(control, service).unlink(missing_ok=True)
