"""The system service's repositories and reads: platform alerts, feature flags, the versions
of the runtime configuration and the cache clears. Every row is platform-wide
(`tenant_id = PLATFORM`)."""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2
from sqlmodel import Session, func, select

from agentmesh.system.v1 import system_pb2 as pb
from mesh.runtime.convert import to_message
from mesh.runtime.repository import TenantRepository
from mesh.system.models import PLATFORM, AlertRow, CacheClearRow, ConfigVersionRow, FeatureFlagRow

alerts_repo = TenantRepository(AlertRow, noun="alert", message=pb.SystemAlert, name_column=None,
                               order_columns=("severity",))
# A commit that changes what GetRuntimeConfig answers (config, flags, cache clears) is marked
# with this (mesh.runtime.wakeups), which answers the held calls at once.
WAKE_TOPIC = "runtime_config"

flags_repo = TenantRepository(FeatureFlagRow, noun="feature_flag", message=pb.FeatureFlag,
                              search_columns=("name", "description"), order_columns=("name",),
                              default_order="name", quota="resource")


def now_stamp() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def stamp(moment: datetime | float) -> timestamp_pb2.Timestamp:
    """A timestamp of a datetime or of seconds since the epoch."""
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(moment if isinstance(moment, datetime)
                     else datetime.fromtimestamp(moment, UTC))
    return out


def flag_message(row: FeatureFlagRow) -> pb.FeatureFlag:
    return to_message(row, pb.FeatureFlag)


def alert_message(row: AlertRow) -> pb.SystemAlert:
    return to_message(row, pb.SystemAlert)


def all_flags(session: Session) -> list[FeatureFlagRow]:
    return list(session.exec(select(FeatureFlagRow).where(
        FeatureFlagRow.tenant_id == PLATFORM).order_by(FeatureFlagRow.name)).all())


def latest_config(session: Session) -> ConfigVersionRow | None:
    return session.exec(select(ConfigVersionRow)
                        .order_by(ConfigVersionRow.version.desc())).first()


def latest_clear(session: Session) -> CacheClearRow | None:
    return session.exec(select(CacheClearRow).order_by(CacheClearRow.generation.desc())).first()


def revision_inputs(session: Session) -> tuple[int, int, datetime | None, CacheClearRow | None]:
    """What the configuration revision is made of: the newest config version, the number of
    flags and their last change, the newest cache clear."""
    version = session.exec(select(func.max(ConfigVersionRow.version))).one() or 0
    count, changed = session.exec(select(func.count(), func.max(FeatureFlagRow.updated_at))
                                  .where(FeatureFlagRow.tenant_id == PLATFORM)).one()
    return version, count, changed, latest_clear(session)


def next_clear_generation(session: Session) -> int:
    return (session.exec(select(func.max(CacheClearRow.generation))).one() or 0) + 1
