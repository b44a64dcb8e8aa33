"""The reference Agent Mesh is measured against: the seeds' stack, written as they would.

FastAPI + uvicorn (as `fastapi[standard]` installs them: uvloop, httptools), one worker; PyJWT
verifying an ES256 bearer token (signature, `exp`, `iss`, `aud`) and the `agents:read` scope;
SQLModel on a SQLite file in WAL mode; every query scoped to the caller's tenant. It serves the
two reads the benchmark compares, with the JSON shapes of Agent Mesh:

    GET /api/v1/agents/{agent_id}             one agent (by id, or by name)
    GET /api/v1/agents?page=&page_size=       {items, total, page, page_size, pages}

The structure is the seeds': `async def` path operations with a session dependency and
`require_scope("agents:read")` (seed 003, the router ADR), an async engine and session factory
yielding one session per request (seed 000, `async def get_db()`; SQLModel's AsyncSession on
aiosqlite here), an `async def` bearer-token dependency as in FastAPI's "OAuth2 with JWT"
tutorial, and Pydantic response models. Nothing in it is slowed down, and nothing is tuned
beyond what those documents show: no caches, no raw SQL, no extra indexes, default pool.

(A first version followed FastAPI's SQL tutorial instead: plain `def` endpoints and a sync
Session from a `yield` dependency. Under 64 connections it stalled for 30 s at a time: the 40
threads of FastAPI's pool blocked on SQLAlchemy's 5+10 connections while the sessions holding
them waited for a thread to close them ("QueuePool limit ... reached, connection timed out").
The async shape of the seeds has no such trap.)

Configuration (environment; bench/lean_runtime.py sets it):

    REFERENCE_DATABASE     SQLite file (default ./reference.db)
    REFERENCE_PUBLIC_KEY   PEM file of the ES256 public key that verifies tokens
    REFERENCE_ISSUER       expected `iss` (default agentmesh-reference)
    REFERENCE_AUDIENCE     expected `aud` (default agentmesh-reference-api)

Run it as the benchmark does:

    REFERENCE_PUBLIC_KEY=key.pem .venv/bin/uvicorn reference_app:app --app-dir bench --port 8001
"""

from __future__ import annotations

import math
import os
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

import jwt
from fastapi import Depends, FastAPI, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy import JSON, Column, UniqueConstraint, event
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel import Field, SQLModel, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

DATABASE = os.environ.get("REFERENCE_DATABASE", "reference.db")
ISSUER = os.environ.get("REFERENCE_ISSUER", "agentmesh-reference")
AUDIENCE = os.environ.get("REFERENCE_AUDIENCE", "agentmesh-reference-api")
_KEY_FILE = os.environ.get("REFERENCE_PUBLIC_KEY")
PUBLIC_KEY = Path(_KEY_FILE).read_text() if _KEY_FILE else None


# --- database -------------------------------------------------------------------------------

engine = create_async_engine(f"sqlite+aiosqlite:///{DATABASE}")
async_session = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@event.listens_for(engine.sync_engine, "connect")
def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def utcnow() -> datetime:
    return datetime.now(UTC)


class AgentBase(SQLModel):
    name: str
    description: str = ""
    agent_type: str = ""
    model: str = ""
    system_prompt: str = ""
    prompt_id: str = ""
    tools: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    skills: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    constraints: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    labels: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = "AGENT_STATUS_DRAFT"
    version: int = 1
    environment: str = ""
    deployed_at: datetime | None = None
    created_by: str = ""


class Agent(AgentBase, table=True):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), primary_key=True)
    tenant_id: str = Field(index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AgentPublic(AgentBase):
    id: str
    tenant_id: str
    created_at: datetime
    updated_at: datetime


T = TypeVar("T")


class PaginatedResponse(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    page_size: int
    pages: int


async def create_db_and_tables() -> None:
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)


async def get_session():
    async with async_session() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


# --- authentication -------------------------------------------------------------------------

class AuthenticatedUser(BaseModel):
    user_id: str
    tenant_id: str
    scopes: list[str]


bearer = HTTPBearer()


async def get_current_user(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> AuthenticatedUser:
    unauthorized = HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="Invalid authentication credentials",
        headers={"WWW-Authenticate": "Bearer"},
    )
    try:
        payload = jwt.decode(
            credentials.credentials,
            PUBLIC_KEY,
            algorithms=["ES256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iss", "aud", "sub"]},
        )
    except jwt.InvalidTokenError:
        raise unauthorized
    if not payload.get("tid"):
        raise unauthorized
    return AuthenticatedUser(user_id=payload["sub"], tenant_id=payload["tid"],
                             scopes=payload.get("scopes", []))


CurrentUser = Annotated[AuthenticatedUser, Depends(get_current_user)]


def require_scope(scope: str):
    """A dependency that lets the request through when the token holds `scope`, its area's
    wildcard (`agents:*`) or `*`."""
    area = scope.split(":", 1)[0]

    async def check(user: CurrentUser) -> AuthenticatedUser:
        if not {"*", f"{area}:*", scope} & set(user.scopes):
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN,
                                detail=f"Missing scope {scope}")
        return user

    return check


# --- the API --------------------------------------------------------------------------------

@asynccontextmanager
async def lifespan(_app: FastAPI):
    await create_db_and_tables()
    yield
    await engine.dispose()


app = FastAPI(title="Agent Mesh reference (FastAPI + SQLModel)", lifespan=lifespan)


@app.get("/api/v1/agents", response_model=PaginatedResponse[AgentPublic])
async def list_agents(
    session: SessionDep,
    user: Annotated[AuthenticatedUser, Depends(require_scope("agents:read"))],
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
):
    tenant = Agent.tenant_id == user.tenant_id
    total = (await session.exec(select(func.count()).select_from(Agent).where(tenant))).one()
    agents = (await session.exec(
        select(Agent).where(tenant)
        .order_by(Agent.created_at.desc(), Agent.id)
        .offset((page - 1) * page_size).limit(page_size)
    )).all()
    return PaginatedResponse[AgentPublic](
        items=agents, total=total, page=page, page_size=page_size,
        pages=math.ceil(total / page_size) if total else 0,
    )


@app.get("/api/v1/agents/{agent_id}", response_model=AgentPublic)
async def get_agent(
    agent_id: str,
    session: SessionDep,
    user: Annotated[AuthenticatedUser, Depends(require_scope("agents:read"))],
):
    tenant = Agent.tenant_id == user.tenant_id
    agent = (await session.exec(select(Agent).where(tenant, Agent.id == agent_id))).first()
    if agent is None:  # agents are also addressed by name
        agent = (await session.exec(select(Agent).where(tenant, Agent.name == agent_id))).first()
    if agent is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Agent not found")
    return agent
