"""The one list shape of the API (seed 003): page from 1, page_size 1-100 (default 20), and the
answer `{items, total, page, page_size, pages}`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mesh.runtime.errors import InvalidArgument

Item = TypeVar("Item")
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    order_by: str = ""

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size

    @classmethod
    def of(cls, request: Any) -> "PageRequest":
        """From a list request message: 0 means "not given" in proto3. Its declared field
        bounds (the `order_by` pattern) are checked here, once for every list."""
        if hasattr(request, "DESCRIPTOR"):  # a protobuf message (tests pass plain objects)
            from mesh.runtime import limits

            limits.check(request)
        page, size = request.page or 1, request.page_size or DEFAULT_PAGE_SIZE
        violations = []
        if page < 1:
            violations.append(("page", "must be at least 1"))
        if not 1 <= size <= MAX_PAGE_SIZE:
            violations.append(("page_size", f"must be between 1 and {MAX_PAGE_SIZE}"))
        if violations:
            raise InvalidArgument("; ".join(f"{f} {d}" for f, d in violations),
                                  field_violations=violations)
        return cls(page, size, getattr(request, "order_by", ""))


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    items: list[Item]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return math.ceil(self.total / self.page_size) if self.total else 0

    def fields(self, convert=None) -> dict[str, Any]:
        """Keyword arguments for a `List*Response` message; `convert` maps each item."""
        items = self.items if convert is None else [convert(r) for r in self.items]
        return {"items": items, "total": self.total, "page": self.page,
                "page_size": self.page_size, "pages": self.pages}
