"""The shared versions-and-labels rules (mesh.runtime.versions) on a real migrated database (the
templates service's tables): numbers, reads by version or label, label moves with their audit
event, deletes refused while labelled or current, and the configuration a resource without
labels and with its own reasons uses (the shape the workflows service adopts)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlmodel import select

from mesh.runtime.audit import AuditEvent
from mesh.runtime.context import Caller
from mesh.runtime.db import Database
from mesh.runtime.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound
from mesh.runtime.paging import PageRequest
from mesh.runtime.settings import Settings
from mesh.runtime.versions import Versions
from mesh.templates.models import TemplateRow, TemplateVersionRow
from mesh.templates.service import DEFINITION
from mesh.templates.store import TEMPLATE_VERSIONS, templates, versions

# The same tables as a resource without version labels, with unprefixed reasons that name it
# in their details (how the workflows service reports a missing version today).
UNLABELLED = Versions(templates, versions, parent="template_id", noun="template",
                      current=("content",), labels=None, reason_prefix="",
                      name_in_details=True)


@pytest.fixture
def db(tmp_path):
    database = Database.for_service("templates", Settings(data_dir=tmp_path))
    database.migrate(DEFINITION.migration_dirs())
    yield database
    database.close()


@pytest.fixture
def caller():
    return Caller(tenant_id=str(uuid.uuid4()), user_id=str(uuid.uuid4()))


def _run(db, fn, write=True):
    return asyncio.run(db.write(fn) if write else db.read(fn))


def _template(db, caller, spec=TEMPLATE_VERSIONS, contents=("a",)) -> TemplateRow:
    """A template whose versions hold {"v": content} for each content, the last current."""
    def create(session):
        row = templates.add(session, TemplateRow(
            tenant_id=caller.tenant_id, name=f"t-{uuid.uuid4().hex[:8]}",
            kind="TEMPLATE_KIND_AGENT", content={"v": contents[0]}))
        spec.first(session, row, created_by=caller.user_id, content=row.content)
        for content in contents[1:]:
            spec.add(session, row, created_by="someone-else", content={"v": content})
        return templates.save(session, row)
    return _run(db, create)


def _reason(fn) -> tuple[type, str, dict]:
    with pytest.raises(DomainError) as err:
        fn()
    return type(err.value), err.value.reason, err.value.details


def test_numbers_grow_from_one_and_the_row_mirrors_the_current_version(db, caller):
    row = _template(db, caller, contents=("a", "b", "c"))
    assert row.version == 3 and row.content == {"v": "c"}
    assert TEMPLATE_VERSIONS.next_number(row) == 4
    _, page = _run(db, lambda s: TEMPLATE_VERSIONS.page(s, caller.tenant_id, row.name,
                                                        PageRequest()), write=False)
    assert [(v.version, v.content["v"]) for v in page.items] == [(3, "c"), (2, "b"), (1, "a")]
    # Who made each version, and when.
    assert [v.created_by for v in page.items] == ["someone-else", "someone-else",
                                                  caller.user_id]
    assert all(v.created_at is not None for v in page.items)


def test_a_read_by_version_by_label_or_both(db, caller):
    row = _template(db, caller, contents=("a", "b", "c"))
    moved = _run(db, lambda s: TEMPLATE_VERSIONS.move_label(s, caller, row.id, "production", 2))
    assert moved.labels == {"production": 2}

    def resolve(number=0, label=""):
        return _run(db, lambda s: TEMPLATE_VERSIONS.resolve(
            s, templates.get(s, caller.tenant_id, row.id), number, label).version, write=False)

    assert (resolve(), resolve(1), resolve(label="production"),
            resolve(2, "production")) == (3, 1, 2, 2)
    assert _reason(lambda: resolve(3, "production")) == (
        NotFound, "TEMPLATE_LABEL_NOT_FOUND", {"label": "production"})
    # `latest` is always there: the current version.
    assert resolve(label="latest") == 3 and resolve(3, "latest") == 3
    assert _reason(lambda: resolve(2, "latest"))[1] == "TEMPLATE_LABEL_NOT_FOUND"
    assert _reason(lambda: resolve(9)) == (NotFound, "TEMPLATE_VERSION_NOT_FOUND",
                                           {"version": 9})


def test_a_label_moves_in_one_step_and_each_move_is_audited(db, caller):
    row = _template(db, caller, contents=("a", "b"))
    _run(db, lambda s: TEMPLATE_VERSIONS.move_label(s, caller, row.id, "production", 1))
    moved = _run(db, lambda s: TEMPLATE_VERSIONS.move_label(s, caller, row.name, "production", 2))
    assert moved.labels == {"production": 2}
    dropped = _run(db, lambda s: TEMPLATE_VERSIONS.drop_label(s, caller, row.id, "production"))
    assert dropped.labels == {}
    events = _run(db, lambda s: [(e.action, e.details) for e in s.exec(
        select(AuditEvent).where(AuditEvent.resource_id == row.id)
        .order_by(AuditEvent.created_at)).all()], write=False)
    assert events == [
        ("template.label", {"label": "production", "version": 1, "previous": None}),
        ("template.label", {"label": "production", "version": 2, "previous": 1}),
        ("template.unlabel", {"label": "production"})]
    assert _reason(lambda: _run(db, lambda s: TEMPLATE_VERSIONS.drop_label(
        s, caller, row.id, "production")))[:2] == (NotFound, "TEMPLATE_LABEL_NOT_FOUND")


def test_a_malformed_label_is_refused_before_the_resource_is_read(db, caller):
    for label, number, field in [("", 1, "label"), ("no spaces", 1, "label"),
                                 ("-x", 1, "label"), ("latest", 1, "label"),
                                 ("ok", 0, "version")]:
        with pytest.raises(InvalidArgument) as err:
            _run(db, lambda s: TEMPLATE_VERSIONS.move_label(s, caller, "absent", label, number))
        assert err.value.field_violations[0][0] == field
    row = _template(db, caller)
    assert _reason(lambda: _run(db, lambda s: TEMPLATE_VERSIONS.move_label(
        s, caller, row.id, "ok", 5)))[:2] == (NotFound, "TEMPLATE_VERSION_NOT_FOUND")


def test_no_version_is_ever_deleted_on_its_own(db, caller):
    """Versions are immutable: labelled, current or neither, a version is never deleted (only
    with its resource); one that does not exist is NOT_FOUND."""
    row = _template(db, caller, contents=("a", "b", "c"))
    _run(db, lambda s: TEMPLATE_VERSIONS.move_label(s, caller, row.id, "stable", 1))

    def delete(number):
        return _run(db, lambda s: TEMPLATE_VERSIONS.refuse_delete(
            s, templates.get(s, caller.tenant_id, row.id), number))

    for number in (1, 2, 3):
        assert _reason(lambda: delete(number)) == (
            FailedPrecondition, "TEMPLATE_VERSION_IMMUTABLE", {"version": number})
    assert _reason(lambda: delete(9))[:2] == (NotFound, "TEMPLATE_VERSION_NOT_FOUND")
    _, page = _run(db, lambda s: TEMPLATE_VERSIONS.page(s, caller.tenant_id, row.id,
                                                        PageRequest()), write=False)
    assert [v.version for v in page.items] == [3, 2, 1]


def test_a_diff_compares_a_version_with_the_one_before_or_the_one_named(db, caller):
    row = _template(db, caller, contents=("a", "b", "c"))

    def pair(version, against=0):
        return _run(db, lambda s: [v.version for v in TEMPLATE_VERSIONS.pair(
            s, templates.get(s, caller.tenant_id, row.id), version, against)], write=False)

    assert pair(3) == [2, 3] and pair(1) == [1, 1] and pair(3, against=1) == [1, 3]


def test_deleting_the_resource_deletes_every_version(db, caller):
    row = _template(db, caller, contents=("a", "b"))
    assert _run(db, lambda s: TEMPLATE_VERSIONS.delete_resource(s, caller, row.id)) == row.name
    left = _run(db, lambda s: s.exec(select(TemplateVersionRow).where(
        TemplateVersionRow.template_id == row.id)).all(), write=False)
    assert left == []


def test_a_resource_without_labels_and_with_its_own_reasons(db, caller):
    row = _template(db, caller, spec=UNLABELLED, contents=("a", "b"))
    assert row.version == 2 and row.content == {"v": "b"}

    def get(number):
        return _run(db, lambda s: UNLABELLED.get(
            s, templates.get(s, caller.tenant_id, row.id), number), write=False)

    assert get(1).content == {"v": "a"}
    assert _reason(lambda: get(7)) == (NotFound, "VERSION_NOT_FOUND",
                                       {"template": row.name, "version": 7})
    assert UNLABELLED.labels_at(row, 2) == []
    assert _reason(lambda: _run(db, lambda s: UNLABELLED.resolve(
        s, templates.get(s, caller.tenant_id, row.id), 0, "production")))[1] == \
        "LABEL_NOT_FOUND"
    with pytest.raises(TypeError):
        _run(db, lambda s: UNLABELLED.move_label(s, caller, row.id, "production", 1))
