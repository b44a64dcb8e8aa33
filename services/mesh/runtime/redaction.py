"""Secret values masked out of everything a service answers, records or logs.

A value read with `RevealSecret` goes into a request (a URL, a header, a body); what comes back
(an error, a server's answer, a library's exception text) may hold it again, and rarely as it
was: a URL's host is lower-cased (`cannot resolve host 'supersecretvalue123'`), paths and queries
are percent-encoded, a non-ASCII host becomes IDNA punycode (`xn--...`), error texts quote with
`repr` or JSON escapes, and HTTP Basic credentials are base64. `SecretMask` replaces every such
form, in any letter case, with `***`:

    mask = SecretMask()
    mask.add(value)                             # as soon as the value is read
    mask.add_derived(basic_token)               # a form the caller itself built
    text = mask.text(text)                      # or mask.value(output), mask.error(domain_error)

Logs are masked too, whatever wrote them (a library's request log, a traceback): every value this
process read lately (`remember`, called by `MasterData.reveal_secret`) is masked out of each
formatted log line and each record shipped to observability (`mesh.runtime.logs`).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, quote_plus

from mesh.runtime.errors import DomainError

MASK = "***"
# Forms of a value shorter than this are not masked on their own (a 2-character base64 slice
# would blank out unrelated text); the value itself always is.
_MIN_FORM = 4


def _base64_forms(data: bytes) -> set[str]:
    """What the value looks like inside any base64 text that holds it: the encoding of each of
    the three alignments it can have in the encoded input, whole groups only."""
    forms = set()
    for skip in range(3):
        chunk = data[skip:]
        chunk = chunk[:len(chunk) // 3 * 3]
        if chunk:
            encoded = base64.b64encode(chunk).decode()
            forms |= {encoded, encoded.replace("+", "-").replace("/", "_")}
    return forms


def _idna_forms(value: str) -> set[str]:
    forms = set()
    for label in re.split(r"[.\u3002\uff0e\uff61]", value):
        if label and not label.isascii():
            try:
                forms.add("xn--" + label.encode("punycode").decode())
            except UnicodeError:
                pass
    try:
        forms.add(value.encode("idna").decode())
    except UnicodeError:
        pass
    return forms


def forms_of(value: str) -> set[str]:
    """The transformations of `value` the platform's own code and libraries produce."""
    raw = value.encode("utf-8", "surrogatepass")
    forms = {value, quote(value, safe=""), quote(value), quote_plus(value),
             json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             repr(value)[1:-1], value.encode("unicode_escape").decode(),
             *_idna_forms(value), *_base64_forms(raw)}
    return {f for f in forms if f == value or len(f) >= _MIN_FORM}


class SecretMask:
    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def __bool__(self) -> bool:
        return bool(self._forms)

    def add(self, value: str) -> None:
        """A secret value and every form of it (`forms_of`), of it lower- and upper-cased too
        (a host is lower-cased before it is percent-encoded or punycoded)."""
        if value:
            self._grow(forms_of(value) | forms_of(value.lower()) | forms_of(value.upper()))

    def add_derived(self, text: str) -> None:
        """Text the caller built from a secret (a Basic token), masked as it is and in the
        forms a server's echo of it may take."""
        if text:
            self._grow(forms_of(text))

    def _grow(self, forms: set[str]) -> None:
        if forms - self._forms:
            self._forms |= forms
            # Longest first: a form that contains another is masked whole.
            self._pattern = re.compile("|".join(
                re.escape(f) for f in sorted(self._forms, key=len, reverse=True)),
                re.IGNORECASE)

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None and text else text

    def value(self, value: Any) -> Any:
        """`value` with every string (and key) in it masked, nested dicts and lists too."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value

    def error(self, error: DomainError) -> DomainError:
        """The error with its message, details and field violations masked (in place)."""
        if self._pattern is not None:
            error.message = self.text(error.message)
            error.args = (error.message,)
            error.details = {self.text(str(k)): self.value(v) for k, v in error.details.items()}
            error.field_violations = [(self.text(f), self.text(d))
                                      for f, d in error.field_violations]
        return error


class _RecentSecrets:
    """The secret values this process read lately (the last `capacity`), as one mask for its
    logs: a line costs one regular-expression pass while any are held, nothing otherwise."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._values: OrderedDict[str, None] = OrderedDict()
        self._mask = SecretMask()
        self._lock = threading.Lock()

    def remember(self, value: str) -> None:
        if not value:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)
                return
            self._values[value] = None
            if len(self._values) > self.capacity:
                self._values.popitem(last=False)
            mask = SecretMask()
            for known in self._values:
                mask.add(known)
            self._mask = mask

    def text(self, text: str) -> str:
        return self._mask.text(text)


LOGS = _RecentSecrets()


def remember(value: str) -> None:
    """A secret value this process now holds: masked out of its logs from now on."""
    LOGS.remember(value)


# A column or key whose name says it holds a secret: its value is never recorded (audit
# events' before/after). `api_key_id`, `secret_ref`, `secret_refs` name a secret, not hold one.
_SECRET_NAME = re.compile(r"(password|passwd|secret|token|private|hash|credential|cipher|"
                          r"encrypted|authorization|api_key|apikey|signing_key)", re.IGNORECASE)
_NAMES_A_SECRET = re.compile(r"(_id|_ids|_ref|_refs|_hint|_prefix|_at|_type|_expires_in)$",
                             re.IGNORECASE)


def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name)) and not _NAMES_A_SECRET.search(name)


def mask_record(value: Any) -> Any:
    """A record (a row as a dict, nested JSON) with the values of secret-named keys replaced by
    `***` and every secret value this process revealed lately masked out of its strings."""
    if isinstance(value, dict):
        return {k: (MASK if isinstance(k, str) and secret_name(k) and v not in (None, "", [], {})
                    else mask_record(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_record(v) for v in value]
    if isinstance(value, str):
        return LOGS._mask.value(value)
    return value
