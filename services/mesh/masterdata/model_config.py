"""A model's configuration checked against its provider (mesh.masterdata.rules.PROVIDERS):
the fields the provider needs, an endpoint URL that is one, prices that are not negative, and
a `secret_ref` that names one of the tenant's secrets."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

from sqlmodel import Session

from mesh.masterdata.rules import PROVIDERS
from mesh.masterdata.store import find_secret
from mesh.runtime.convert import plain
from mesh.runtime.errors import InvalidArgument, invalid_field

# Paths of the API beside /models/{id}.
RESERVED = ("providers",)


def check(state: dict[str, Any]) -> None:
    """The model's whole state (after a change) fits its provider."""
    provider = PROVIDERS.get(state.get("provider") or "")
    if provider is None:
        given = "is required" if not state.get("provider") \
            else "unknown provider " + repr(state["provider"])
        raise InvalidArgument(
            f"provider: {given}; one of {', '.join(PROVIDERS)}", reason="UNKNOWN_PROVIDER",
            field_violations=[("provider", f"one of {', '.join(PROVIDERS)}")])
    if not state.get("model_id"):
        raise invalid_field("model_id", "is required (the provider's name of the model)")
    url = state.get("endpoint_url") or ""
    if url:
        try:
            parsed = urlparse(url)
        except ValueError:  # "http://[": not a URL at all
            raise invalid_field("endpoint_url", "an http or https URL") from None
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise invalid_field("endpoint_url", "an http or https URL")
    elif provider.endpoint_url_required:
        raise invalid_field("endpoint_url", f"is required for provider {provider.name}")
    if provider.secret_required and not state.get("secret_ref"):
        raise invalid_field("secret_ref", f"is required for provider {provider.name}: the name "
                            "of the secret that holds the API key")
    for name in provider.required_parameters:
        if name not in (state.get("default_parameters") or {}):
            raise invalid_field(f"default_parameters.{name}",
                                f"is required for provider {provider.name}")
    for name in ("context_window", "max_output_tokens"):
        if (state.get(name) or 0) < 0:
            raise invalid_field(name, "must not be negative")
    pricing = state.get("pricing") or {}
    for name in ("input_per_1m_tokens", "output_per_1m_tokens"):
        if (pricing.get(name) or 0) < 0:
            raise invalid_field(f"pricing.{name}", "must not be negative")
    currency = pricing.get("currency") or "USD"
    if not re.match(r"^[A-Z]{3}$", currency):
        raise invalid_field("pricing.currency", "an ISO 4217 code such as USD")


def normalise(fields: dict[str, Any]) -> None:
    """Defaults for what was left unspecified (a chat model, active, prices in USD)."""
    if fields.get("model_type") == "MODEL_TYPE_UNSPECIFIED":
        fields["model_type"] = "MODEL_TYPE_CHAT"
    if fields.get("status") == "MODEL_STATUS_UNSPECIFIED":
        fields["status"] = "MODEL_STATUS_ACTIVE"
    if "pricing" in fields:
        fields["pricing"] = {"currency": "USD", **(fields["pricing"] or {})}
    if "default_parameters" in fields:
        fields["default_parameters"] = plain(fields["default_parameters"])


def check_secret_ref(session: Session, tenant_id: str, ref: str) -> None:
    if ref and find_secret(session, tenant_id, ref) is None:
        raise InvalidArgument(f"secret_ref: the tenant has no secret {ref!r}",
                              reason="SECRET_REF_NOT_FOUND",
                              field_violations=[("secret_ref",
                                                 "names none of the tenant's secrets")])
