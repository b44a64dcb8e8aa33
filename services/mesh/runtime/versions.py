"""Immutable versions of a resource, and labels that point at them: one rule set for every
versioned resource (prompts, templates, agents, workflows; policies later).

A versioned resource is two tables:

* the resource's row, which carries `version` (the current number) and, when it has labels,
  `labels` (a JSON object label -> version number); it may mirror the current version's fields
  (a prompt's `content`) so that plain reads need no second table;
* its version table: one row per version, never changed once written, with the resource's id
  in a `parent` column, the `version` number, who made it (`created_by`) and when
  (`created_at`, from `TenantTable`), and the versioned fields.

    PROMPT_VERSIONS = Versions(prompts, prompt_versions, parent="prompt_id", noun="prompt",
                               current=("content", "variables"))
    PROMPT_VERSIONS.first(session, row, created_by=user, content=..., variables=...)
    PROMPT_VERSIONS.add(session, row, created_by=user, content=..., variables=...)   # row.version + 1
    version = PROMPT_VERSIONS.resolve(session, row, number, label)   # by label, number, or current
    row = PROMPT_VERSIONS.move_label(session, caller, key, "production", 3)   # audited

The numbers start at 1 and only grow: the next is the current one plus one (the current
version cannot be deleted, so it is always the highest). A label (`production`, `latest`, ...)
names one version and moves when it is set again; `latest` is implicit and always names the
current (newest) version, so it cannot be set or removed. A read may ask for a version, a label,
or both (then the label must point at that version); `diff` compares two versions field by
field. A running resource (an agent's interaction, a workflow's execution) asks `number(row,
version, label)` with `default_label`: `production` when the resource has it, else `latest`. Every refusal has the resource's reason
prefix (`PROMPT_VERSION_NOT_FOUND`, `TEMPLATE_LABEL_NOT_FOUND`, ...).

Nothing here is a servicer or a message: for the writes on a row it was given, the caller holds
the row lock (`get(..., lock=True)`) and records the audit event; the label moves find, lock,
audit and save the row themselves. Rows become messages in the service.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlmodel import Session, select

from mesh.runtime import audit
from mesh.runtime.context import Caller
from mesh.runtime.errors import FailedPrecondition, NotFound, invalid_field
from mesh.runtime.paging import Page, PageRequest
from mesh.runtime.repository import TenantRepository

V = TypeVar("V")  # a version table's row

LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
# The label every versioned resource has: its current (newest) version.
LATEST = "latest"
# The label a run uses when it names none, if the resource has it (else LATEST).
PRODUCTION = "production"


def check_label(label: str, version: int) -> None:
    """A label to set: a name of 1-50 letters, digits, '.', '_' or '-' other than `latest`,
    and a version from 1. Checked before anything is read, so a malformed request is a 400
    whatever exists."""
    if not LABEL.match(label):
        raise invalid_field("label", "1-50 letters, digits, '.', '_' or '-'")
    if label == LATEST:
        raise invalid_field("label", "'latest' always names the newest version; it cannot "
                            "be set")
    if version < 1:
        raise invalid_field("version", "is required (a version number from 1)")


@dataclass(frozen=True)
class Versions(Generic[V]):
    """How one kind of resource keeps its versions.

    `resources` is the resource table's repository, `repository` the version table's (quota
    "version", counted per tenant); `parent` the version table's column naming the resource;
    `noun` names the resource in messages, audit events and, upper-cased, reasons
    (`reason_prefix` overrides that: "" gives `VERSION_NOT_FOUND`); `name` is the resource
    row's attribute that names it to a user (a workflow's `slug`); `current` are the versioned
    fields the resource row mirrors; `labels` the row's JSON column of version labels (None: the
    resource has none); `name_in_details` adds `{noun: name}` to the details of a refusal."""

    resources: TenantRepository
    repository: TenantRepository
    parent: str
    noun: str
    name: str = "name"
    current: Sequence[str] = ()
    labels: str | None = "labels"
    reason_prefix: str | None = None
    name_in_details: bool = False

    @property
    def table(self) -> type:
        return self.repository.model

    def _reason(self, what: str) -> str:
        prefix = f"{self.noun.upper()}_" if self.reason_prefix is None else self.reason_prefix
        return prefix + what

    def _details(self, row: Any, **details: Any) -> dict[str, Any]:
        return {self.noun: getattr(row, self.name), **details} if self.name_in_details \
            else details

    def _title(self, row: Any) -> str:
        return f"{self.noun} {getattr(row, self.name)!r}"

    # ---- numbers and writes -----------------------------------------------------------------
    @staticmethod
    def next_number(row: Any) -> int:
        """The number the next version of `row` gets."""
        return row.version + 1

    def first(self, session: Session, row: Any, *, created_by: str, **fields: Any) -> V:
        """Version 1 of a resource just added (`row` has its id and already holds the fields)."""
        return self._insert(session, row, 1, created_by, fields, mirror=False)

    def add(self, session: Session, row: Any, *, created_by: str, number: int | None = None,
            **fields: Any) -> V:
        """A new version of `row` (locked by the caller), which becomes the current one: its
        number (`next_number` unless given, for a resource that must know it before it builds
        the version's fields) is set on the row, with the mirrored fields."""
        return self._insert(session, row, number or self.next_number(row), created_by, fields,
                            mirror=True)

    def _insert(self, session: Session, row: Any, number: int, created_by: str,
                fields: dict[str, Any], *, mirror: bool) -> V:
        version = self.repository.add(session, self.table(
            tenant_id=row.tenant_id, version=number, created_by=created_by,
            **{self.parent: row.id}, **fields))
        if mirror:
            row.version = number
            for name in self.current:
                if name in fields:
                    setattr(row, name, fields[name])
        return version

    def refuse_delete(self, session: Session, row: Any, number: int) -> None:
        """Versions are immutable (issue 29): none is ever deleted on its own, whatever points at
        it. NOT_FOUND for a version that does not exist, else FAILED_PRECONDITION
        `<NOUN>_VERSION_IMMUTABLE`; a label moves instead, and deleting the resource removes its
        versions with it (its history stays in the audit log)."""
        version = self.get(session, row, number)
        raise FailedPrecondition(
            f"version {version.version} of {self._title(row)} cannot be deleted: versions are "
            "immutable; move a label to another version instead",
            reason=self._reason("VERSION_IMMUTABLE"),
            details=self._details(row, version=version.version))

    def delete_all(self, session: Session, row: Any) -> None:
        """Every version of `row`, which is being deleted."""
        for version in session.exec(select(self.table).where(
                self.table.tenant_id == row.tenant_id,
                getattr(self.table, self.parent) == row.id)).all():
            self.repository.delete(session, version)

    def delete_resource(self, session: Session, caller: Caller, key: str) -> str:
        """Deletes the resource `key` (id or name) with all its versions, audited; its name."""
        row = self.resources.get(session, caller.tenant_id, key, lock=True)
        self.delete_all(session, row)
        return self.resources.remove(session, row, caller)

    # ---- reads --------------------------------------------------------------------------------
    def pair(self, session: Session, row: Any, version: int, against: int = 0) -> tuple[V, V]:
        """The two versions a diff compares, (older, newer): `version` against `against`,
        by default the version before it."""
        newer = self.get(session, row, version)
        return self.get(session, row, against or max(version - 1, 1)), newer

    def get(self, session: Session, row: Any, number: int) -> V:
        """Version `number` of `row`, or NOT_FOUND `<NOUN>_VERSION_NOT_FOUND`."""
        found = session.exec(select(self.table).where(
            self.table.tenant_id == row.tenant_id, getattr(self.table, self.parent) == row.id,
            self.table.version == number)).first()
        if found is None:
            raise NotFound(f"{self._title(row)} has no version {number}",
                           reason=self._reason("VERSION_NOT_FOUND"),
                           details=self._details(row, version=number))
        return found

    def number(self, row: Any, number: int = 0, label: str = "") -> int:
        """The version a read asks for: the label's (with a number too, only if the label
        points at it), else the number, else the current one."""
        if label:
            labels = {LATEST: row.version, **self._labels(row)}
            if label not in labels or (number and labels[label] != number):
                at = f" at version {number}" if number else ""
                raise NotFound(f"{self._title(row)} has no label {label!r}{at}",
                               reason=self._reason("LABEL_NOT_FOUND"),
                               details=self._details(row, label=label))
            return labels[label]
        return number or row.version

    def resolve(self, session: Session, row: Any, number: int = 0, label: str = "") -> V:
        """The version row a read asks for (see `number`)."""
        return self.get(session, row, self.number(row, number, label))

    def page(self, session: Session, tenant_id: str, key: str,
             page: PageRequest) -> tuple[Any, Page[V]]:
        """The resource `key` (id or name) and one page of its versions, newest first unless
        the request orders otherwise."""
        row = self.resources.get(session, tenant_id, key)
        return row, self.repository.list(session, tenant_id, page, filters={self.parent: row.id})

    # ---- labels -------------------------------------------------------------------------------
    def _labels(self, row: Any) -> dict[str, int]:
        return getattr(row, self.labels) if self.labels else {}

    def labels_at(self, row: Any, number: int, *, latest: bool = True) -> list[str]:
        """The labels that point at version `number`, sorted; `latest` for the current one
        of a resource with labels (unless `latest=False`: only the labels set)."""
        named = [k for k, v in self._labels(row).items() if v == number]
        if latest and self.labels and number == row.version and LATEST not in named:
            named.append(LATEST)
        return sorted(named)

    def default_label(self, row: Any) -> str:
        """The label a run that names neither version nor label runs: `production` when the
        resource has it, else `latest`."""
        return PRODUCTION if PRODUCTION in self._labels(row) else LATEST

    def pick(self, row: Any, number: int = 0, label: str = "") -> tuple[int, str]:
        """The version a run asks for, and the label it went by ("" when it named only a
        version): the label's, the number, or `default_label`'s."""
        if not number and not label:
            label = self.default_label(row)
        return self.number(row, number, label), label

    @staticmethod
    def diff(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """The top-level fields whose values differ between two versions' documents, by name:
        (field, before, after), None where a side lacks the field."""
        return [(name, before.get(name), after.get(name))
                for name in sorted(set(before) | set(after))
                if before.get(name) != after.get(name)]

    def set_label(self, session: Session, row: Any, label: str, number: int) -> int | None:
        """Points `label` of `row` (locked) at version `number`, which must exist; the number
        it pointed at before, if any. (`check_label` first, before the row is read.)"""
        if self.labels is None:
            raise TypeError(f"a {self.noun} has no version labels")
        self.get(session, row, number)
        labels = self._labels(row)
        # A new dict: the JSON column sees the change.
        setattr(row, self.labels, {**labels, label: number})
        return labels.get(label)

    def remove_label(self, row: Any, label: str) -> None:
        """Removes `label` from `row` (locked), or NOT_FOUND `<NOUN>_LABEL_NOT_FOUND`
        (INVALID_ARGUMENT for `latest`, which is always there)."""
        if label == LATEST:
            raise invalid_field("label", "'latest' always names the newest version; it cannot "
                                "be removed")
        labels = self._labels(row)
        if label not in labels:
            raise NotFound(f"{self._title(row)} has no label {label!r}",
                           reason=self._reason("LABEL_NOT_FOUND"),
                           details=self._details(row, label=label))
        setattr(row, self.labels, {k: v for k, v in labels.items() if k != label})

    def move_label(self, session: Session, caller: Caller, key: str, label: str,
                   number: int) -> Any:
        """The resource `key` (id or name) with `label` pointing at version `number`, saved
        and audited ("label", with the version it pointed at before). A malformed label or
        number is refused before the resource is read."""
        check_label(label, number)
        row = self.resources.get(session, caller.tenant_id, key, lock=True)
        previous = self.set_label(session, row, label, number)
        audit.record(session, caller, "label", self.noun, row.id, label=label, version=number,
                     previous=previous)
        return self.resources.save(session, row)

    def drop_label(self, session: Session, caller: Caller, key: str, label: str) -> Any:
        """The resource `key` without `label`, saved and audited ("unlabel")."""
        row = self.resources.get(session, caller.tenant_id, key, lock=True)
        self.remove_label(row, label)
        self.resources.save(session, row)
        audit.record(session, caller, "unlabel", self.noun, row.id, label=label)
        return row
