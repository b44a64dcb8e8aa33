"""Threads: conversations kept on the server, and what of them the model is sent.

The context-window rule (`window`): the model is sent the system prompt (always), then as many
of the thread's newest messages as fit, then the new message. What fits: the agent's
`config.context_window_tokens`, else the model's `context_window` (master data), minus the
answer's room (`max_tokens_per_call`, else the model's `max_output_tokens`, else a quarter of
the window), minus the system prompt and the new message. Oldest messages are dropped first, a
user message and the answer to it together (history never starts with an answer), and
`config.max_history_messages`, when set, caps the count as well. Tokens are estimated as
characters / 4 plus 4 per message (a model's own tokenizer is not at hand; the estimate errs
on the generous side for English text). Without a window (neither is set) the last 100
messages are kept.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, func, select

from agentmesh.agents.v1 import agents_pb2 as pb
from mesh.agents.models import ThreadMessageRow, ThreadRow
from mesh.runtime.convert import to_message
from mesh.runtime.errors import invalid_field
from mesh.runtime.repository import TenantRepository
from mesh.runtime.tables import utcnow

threads = TenantRepository(ThreadRow, noun="thread", message=pb.Thread, name_column=None,
                           default_order="-updated_at")
DEFAULT_KEPT = 100


def tokens(text: str) -> int:
    return len(text) // 4 + 4


def thread_message(row: ThreadRow) -> pb.Thread:
    return to_message(row, pb.Thread, metadata=row.thread_metadata)


def message_message(row: ThreadMessageRow) -> pb.ThreadMessage:
    return to_message(row, pb.ThreadMessage)


def window(rows: list[ThreadMessageRow], *, context_window: int, reserve: int,
           system_prompt: str, message: str, max_messages: int = 0) -> list[dict[str, Any]]:
    """The kept history, oldest first, as chat messages (the rule above)."""
    if context_window:
        budget = context_window - (reserve or context_window // 4) - tokens(system_prompt) - \
            tokens(message)
    else:
        budget = None
    kept: list[ThreadMessageRow] = []
    used = 0
    limit = max_messages or (DEFAULT_KEPT if budget is None else 0)
    for row in reversed(rows):
        cost = row.tokens or tokens(row.content)
        if budget is not None and used + cost > budget:
            break
        if limit and len(kept) >= limit:
            break
        kept.append(row)
        used += cost
    kept.reverse()
    while kept and kept[0].role != "user":   # never start with an answer
        kept.pop(0)
    return [{"role": row.role, "content": row.content} for row in kept]


def bind(session: Session, tenant_id: str, thread_id: str, agent_id: str) -> list[ThreadMessageRow]:
    """The thread's messages, after checking (and setting, on first use) its agent."""
    thread = threads.get(session, tenant_id, thread_id, lock=True)
    if thread.agent_id and thread.agent_id != agent_id:
        raise invalid_field("thread_id", f"thread {thread_id!r} talks to another agent")
    if not thread.agent_id:
        thread.agent_id = agent_id
        threads.save(session, thread)
    return list(session.exec(select(ThreadMessageRow).where(
        ThreadMessageRow.tenant_id == tenant_id, ThreadMessageRow.thread_id == thread_id)
        .order_by(ThreadMessageRow.seq)).all())


def append(session: Session, tenant_id: str, thread_id: str, call_id: str,
           said: list[tuple[str, str]]) -> None:
    """Adds (role, content) messages to the thread, numbered on."""
    thread = threads.find(session, tenant_id, thread_id, lock=True)
    if thread is None:   # deleted meanwhile
        return
    last = session.exec(select(func.max(ThreadMessageRow.seq)).where(
        ThreadMessageRow.thread_id == thread_id)).one() or 0
    now = utcnow()
    for offset, (role, content) in enumerate(said, start=1):
        session.add(ThreadMessageRow(tenant_id=tenant_id, thread_id=thread_id, seq=last + offset,
                                     role=role, content=content, call_id=call_id,
                                     tokens=tokens(content), created_at=now, updated_at=now))
    thread.message_count = last + len(said)
    thread.updated_at = utcnow()
    threads.save(session, thread)


def messages_page(session: Session, tenant_id: str, thread_id: str, page: int,
                  page_size: int) -> pb.ListThreadMessagesResponse:
    threads.get(session, tenant_id, thread_id)
    scope = (ThreadMessageRow.tenant_id == tenant_id, ThreadMessageRow.thread_id == thread_id)
    total = session.exec(select(func.count()).select_from(ThreadMessageRow).where(*scope)).one()
    rows = session.exec(select(ThreadMessageRow).where(*scope).order_by(ThreadMessageRow.seq)
                        .offset((page - 1) * page_size).limit(page_size)).all()
    return pb.ListThreadMessagesResponse(
        items=[message_message(r) for r in rows], total=total, page=page, page_size=page_size,
        pages=(total + page_size - 1) // page_size)


def delete(session: Session, tenant_id: str, thread_id: str) -> None:
    thread = threads.get(session, tenant_id, thread_id, lock=True)
    for row in session.exec(select(ThreadMessageRow).where(
            ThreadMessageRow.thread_id == thread.id)).all():
        session.delete(row)
    threads.delete(session, thread)
