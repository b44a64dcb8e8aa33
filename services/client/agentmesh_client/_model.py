"""The base of every generated model: a pydantic model that keeps what it does not know (a newer
server's fields), reads like the JSON it came from (`agent.name`, and `agent["name"]` for code
written against dicts), and gives that JSON back (`to_dict()`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    # defer_build: a model's validator is built the first time it is used, not at import.
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True,
                              protected_namespaces=(), serialize_by_alias=True)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object the server sent (or would accept): set fields only, by their API
        names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._value(key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self._value(key)
        except AttributeError:
            return default

    def __contains__(self, key: str) -> bool:
        return key in self.to_dict()

    def _value(self, key: str) -> Any:
        for name, info in type(self).model_fields.items():
            if key == (info.alias or name):
                return getattr(self, name)
        extra = self.__pydantic_extra__ or {}
        if key in extra:
            return extra[key]
        raise AttributeError(key)


def as_dict(value: Any) -> Any:
    """A model (or a list of them) as plain JSON data; anything else as it is."""
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: as_dict(v) for k, v in value.items()}
    return value
