"""Secret values are masked in every form the request path gives them (mesh.runtime.redaction),
and out of the process's logs."""

from __future__ import annotations

import base64
import io
import json
import logging
from urllib.parse import quote

from mesh.runtime import logs, redaction
from mesh.runtime.errors import PermissionDenied
from mesh.runtime.redaction import SecretMask


def test_every_form_of_a_value_is_masked_in_any_case():
    value = "Süper Geheim-Value42"
    mask = SecretMask()
    mask.add(value)
    basic = base64.b64encode(f"user:{value}".encode()).decode()
    mask.add_derived(basic)
    forms = [value, value.lower(), value.upper(), quote(value, safe=""), quote(value.lower()),
             json.dumps(value)[1:-1], repr(value), "xn--" + value.lower().encode("punycode").decode(),
             basic, base64.b64encode(f"someone-else:{value}!".encode()).decode()]
    for form in forms:
        masked = mask.text(f"before {form} after")
        assert "***" in masked, form
        assert "geheim" not in masked.lower() and "R2VoZWlt" not in masked, (form, masked)
    assert mask.text("nothing secret here") == "nothing secret here"


def test_values_and_errors_are_masked_whole():
    mask = SecretMask()
    mask.add("SuperSecretValue123")
    assert mask.value({"Host": ["x supersecretvalue123 y"], "SUPERSECRETVALUE123": 1}) == {
        "Host": ["x *** y"], "***": 1}
    error = PermissionDenied("cannot resolve host 'supersecretvalue123'", reason="EGRESS_DENIED",
                             details={"host": "supersecretvalue123"},
                             field_violations=[("http.url", "host supersecretvalue123")])
    mask.error(error)
    assert "supersecret" not in json.dumps([error.message, error.details,
                                            error.field_violations]).lower()
    assert str(error) == error.message


def test_a_value_this_process_read_is_masked_out_of_its_log_lines():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs._Masked(logging.Formatter("%(message)s")))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redaction.remember("Log-Secret-Value-9")
        logger.warning("GET http://x/%s failed", quote("log-secret-value-9"))
        try:
            raise ValueError("host 'LOG-SECRET-VALUE-9' unknown")
        except ValueError:
            logger.exception("unexpected")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert "***" in text and "secret-value-9" not in text.lower()
