"""The runtime configuration document: what may change without a restart, its defaults (from
the settings the process started with), its validation, and the read-only view of the static
settings with every secret masked."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mesh.runtime.errors import InvalidArgument
from mesh.runtime.settings import Settings

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
READ_ONLY = "settings"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Logging(_Section):
    # Every service's level, and overrides per service ({"agents": "DEBUG"}).
    level: Level = "INFO"
    services: dict[str, Level] = Field(default_factory=dict, max_length=50)


class Retention(_Section):
    # Spans, logs and events older than this go (observability's pruning).
    days: float = Field(default=7, gt=0, le=3650)


class Alerts(_Section):
    # System alerts fire above these (the system service's sampler).
    memory_percent: float = Field(default=90, gt=0, le=100)
    disk_percent: float = Field(default=90, gt=0, le=100)


SECTIONS: dict[str, type[_Section]] = {"logging": Logging, "retention": Retention,
                                       "alerts": Alerts}


def defaults(settings: Settings) -> dict[str, Any]:
    level = settings.log_level.upper()
    return {"logging": {"level": level if level in Level.__args__ else "INFO", "services": {}},
            "retention": {"days": settings.retention_days},
            "alerts": Alerts().model_dump()}


def plain(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def validate(document: dict[str, Any], services: list[str]) -> dict[str, Any]:
    """The stored form of the writable sections of `document`; INVALID_ARGUMENT naming each bad
    field (`config.logging.level`)."""
    violations: list[tuple[str, str]] = []
    result: dict[str, Any] = {}
    for name, section in document.items():
        if name == READ_ONLY:
            continue  # checked by the caller against the current view
        model = SECTIONS.get(name)
        if model is None:
            violations.append((f"config.{name}", "unknown section; writable sections: "
                               + ", ".join(SECTIONS)))
            continue
        if not isinstance(section, dict):
            violations.append((f"config.{name}", "must be an object"))
            continue
        try:
            parsed = model.model_validate(plain(section))
        except ValidationError as exc:
            for error in exc.errors():
                path = ".".join(str(p) for p in error["loc"])
                violations.append((f"config.{name}.{path}" if path else f"config.{name}",
                                   error["msg"]))
            continue
        if isinstance(parsed, Logging):
            unknown = sorted(set(parsed.services) - set(services))
            violations.extend((f"config.logging.services.{s}", "unknown service")
                              for s in unknown)
        result[name] = plain(parsed.model_dump(exclude_unset=True))
    if violations:
        raise InvalidArgument("invalid configuration: " + "; ".join(
            f"{f}: {d}" for f, d in violations[:10]), field_violations=violations)
    return result


def effective(stored: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Defaults with the stored sections' fields over them."""
    merged = defaults(settings)
    for name, section in stored.items():
        if name in merged:
            merged[name] = {**merged[name], **section}
    return merged


def settings_view(settings: Settings) -> dict[str, Any]:
    """The settings the processes started with (a restart changes them), secrets masked: a
    field declared `repr=False` shows only whether it is set; a database URL loses its
    password."""
    from sqlalchemy.engine import make_url

    view: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if not field.repr:
            view[name] = "***" if value else ""
        elif name == "database_url" and value:
            try:
                view[name] = make_url(value).render_as_string(hide_password=True)
            except Exception:  # noqa: BLE001 - unparsable: show nothing of it
                view[name] = "***"
        elif name in ("peers", "metrics_targets", "supervisor_control_dir"):
            continue  # addresses of this machine, shown per service in /system/info
        else:
            view[name] = str(value) if not isinstance(value, (int, float, bool)) else value
    return view
