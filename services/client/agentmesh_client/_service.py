"""What every generated service class shares: turning an RPC's call into its REST request (the
route from the contract, path values, the body or the query), and the collection verbs
(`list`, `iterate`, `get`, `create`, `update`, `delete`, `activate`) of services that manage one
kind of thing (AgentService: ListAgents, GetAgent, CreateAgent, ...)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from agentmesh_client import models
from agentmesh_client._generated.contract import ROUTES
from agentmesh_client._model import Model
from agentmesh_client.errors import MethodNotAllowed

if TYPE_CHECKING:
    from agentmesh_client.client import AsyncClient, Client

JSON = dict[str, Any]
# A path variable of a binding: `{agent_id}` or `{path=**}`.
_VARIABLE = re.compile(r"\{([^}=]*)(?:=([^}]*))?\}")


def route(rpc: str, *values: Any) -> tuple[str, str]:
    """(HTTP method, path) of an RPC's REST route, its path variables filled with `values` in
    order: `route("agentmesh.agents.v1.AgentService/GetAgent", "triage")` is
    `("GET", "/api/v1/agents/triage")`. An RPC without a route is the 405 the gateway answers."""
    try:
        method, template = ROUTES[rpc][:2]
    except KeyError:
        raise MethodNotAllowed(405, "METHOD_NOT_ALLOWED", f"{rpc} has no REST route") from None
    filled = iter(values)

    def fill(match: re.Match) -> str:
        value = str(next(filled))
        return quote(value, safe="/" if match.group(2) and "**" in match.group(2) else "")
    return method, _VARIABLE.sub(fill, template)


def _model(name: str) -> type[Model] | None:
    return getattr(models, name, None) if name else None


def _query(payload: JSON) -> JSON:
    """Query parameters the transcoder reads: booleans as true/false, lists repeated."""
    return {k: ("true" if v else "false") if isinstance(v, bool) else v
            for k, v in payload.items() if v is not None}


def prepare(rpc: str, path_values: tuple, body: Any, fields: JSON
            ) -> tuple[str, str, Any, JSON | None]:
    """(method, path, JSON body, query) of a call of `rpc`. With a binding's `body: "*"` the
    arguments are the body; with `body: "agent"` the body is `agent=` when given, else all of
    them (the thing itself); with no body they are the query."""
    method, path = route(rpc, *path_values)
    body_field = ROUTES[rpc][2]
    payload = {**(body.to_dict() if isinstance(body, Model) else dict(body or {})), **{
        k: (v.to_dict() if isinstance(v, Model) else v) for k, v in fields.items()}}
    if body_field == "*":
        return method, path, payload, None
    if body_field:
        if body_field in payload and isinstance(payload[body_field], dict):
            inner = payload.pop(body_field)
            return method, path, inner, _query(payload) or None
        # The thing itself; the request's own fields beside it (`update_mask`) are the query.
        request = _model(ROUTES[rpc][5])
        beside = set(request.model_fields) - {body_field} if request else set()
        query = {k: payload.pop(k) for k in list(payload) if k in beside}
        return method, path, payload, _query(query) or None
    return method, path, ({} if method in ("POST", "PUT", "PATCH") else None), \
        _query(payload) or None


def parse(rpc: str, data: Any, model: type[Model] | None = None) -> Any:
    model = model or _model(ROUTES[rpc][4])
    if model is None or not isinstance(data, dict):
        return data
    return model.model_validate(data)


class _Base:
    SERVICE = ""
    NOUN = ""

    def _rpc(self, name: str) -> str:
        return f"{self.SERVICE}/{name}"

    def _verb(self, verb: str) -> str:
        """The RPC of a collection verb: `List` -> ListAgents, `Get` -> GetAgent."""
        return self._rpc(f"{verb}{self.NOUN}{'s' if verb == 'List' else ''}")

    @property
    def path(self) -> str:
        """The collection's path (its List route)."""
        return route(self._verb("List"))[1]


class Service(_Base):
    """A service of the contract, called through a `Client`."""

    def __init__(self, client: "Client") -> None:
        self.client = client

    def _call(self, name: str, path_values: tuple, body: Any, fields: JSON,
              model: type[Model] | None = None, headers: dict[str, str] | None = None) -> Any:
        rpc = self._rpc(name)
        method, path, json, params = prepare(rpc, path_values, body, fields)
        return parse(rpc, self.client.request(method, path, json=json, params=params,
                                              headers=headers), model)

    def _stream(self, name: str, path_values: tuple, body: Any, fields: JSON,
                model: type[Model] | None = None) -> Iterator[Any]:
        rpc = self._rpc(name)
        method, path, json, params = prepare(rpc, path_values, body, fields)
        for item in self.client.stream_events(path, params=params, method=method, json=json):
            yield parse(rpc, item, model)

    # -- the collection verbs -------------------------------------------------------------------
    def list(self, **params: Any) -> Any:
        """One page: `.items`, `.total`, `.page`, `.page_size`, `.pages`."""
        return self._call(self._verb("List").rsplit("/", 1)[1], (), None, params)

    def iterate(self, page_size: int = 100, **params: Any) -> Iterator[Any]:
        """Every item over every page."""
        page = 1
        while True:
            answer = self.list(**params, page=page, page_size=page_size)
            yield from answer.get("items", [])
            if page >= int(answer.get("pages") or 1):
                return
            page += 1

    def get(self, key: str) -> Any:
        return self._call(f"Get{self.NOUN}", (key,), None, {})

    def create(self, body: JSON | Model, idempotency_key: str | None = None) -> Any:
        rpc = self._verb("Create")
        method, path = route(rpc)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data = body.to_dict() if isinstance(body, Model) else body
        return parse(rpc, self.client.request(method, path, json=data, headers=headers))

    def update(self, key: str, body: JSON | Model, update_mask: str = "") -> Any:
        """Changes the fields `body` carries (or exactly those `update_mask` names)."""
        rpc = self._verb("Update")
        method, path = route(rpc, key)
        data = body.to_dict() if isinstance(body, Model) else body
        params = {"update_mask": update_mask} if update_mask else None
        return parse(rpc, self.client.request(method, path, json=data, params=params))

    def delete(self, key: str) -> Any:
        return self._call(f"Delete{self.NOUN}", (key,), None, {})

    def activate(self, key: str) -> Any:
        """Makes it active (workflows: executable; agents: able to interact)."""
        return self._call(f"Activate{self.NOUN}", (key,), {}, {})


class AsyncService(_Base):
    """A service of the contract, called through an `AsyncClient`."""

    def __init__(self, client: "AsyncClient") -> None:
        self.client = client

    async def _call(self, name: str, path_values: tuple, body: Any, fields: JSON,
                    model: type[Model] | None = None,
                    headers: dict[str, str] | None = None) -> Any:
        rpc = self._rpc(name)
        method, path, json, params = prepare(rpc, path_values, body, fields)
        return parse(rpc, await self.client.request(method, path, json=json, params=params,
                                                    headers=headers), model)

    async def _stream(self, name: str, path_values: tuple, body: Any, fields: JSON,
                      model: type[Model] | None = None) -> AsyncIterator[Any]:
        rpc = self._rpc(name)
        method, path, json, params = prepare(rpc, path_values, body, fields)
        async for item in self.client.stream_events(path, params=params, method=method,
                                                    json=json):
            yield parse(rpc, item, model)

    async def list(self, **params: Any) -> Any:
        return await self._call(self._verb("List").rsplit("/", 1)[1], (), None, params)

    async def iterate(self, page_size: int = 100, **params: Any) -> AsyncIterator[Any]:
        page = 1
        while True:
            answer = await self.list(**params, page=page, page_size=page_size)
            for item in answer.get("items", []):
                yield item
            if page >= int(answer.get("pages") or 1):
                return
            page += 1

    async def get(self, key: str) -> Any:
        return await self._call(f"Get{self.NOUN}", (key,), None, {})

    async def create(self, body: JSON | Model, idempotency_key: str | None = None) -> Any:
        rpc = self._verb("Create")
        method, path = route(rpc)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        data = body.to_dict() if isinstance(body, Model) else body
        return parse(rpc, await self.client.request(method, path, json=data, headers=headers))

    async def update(self, key: str, body: JSON | Model, update_mask: str = "") -> Any:
        rpc = self._verb("Update")
        method, path = route(rpc, key)
        data = body.to_dict() if isinstance(body, Model) else body
        params = {"update_mask": update_mask} if update_mask else None
        return parse(rpc, await self.client.request(method, path, json=data, params=params))

    async def delete(self, key: str) -> Any:
        return await self._call(f"Delete{self.NOUN}", (key,), None, {})

    async def activate(self, key: str) -> Any:
        return await self._call(f"Activate{self.NOUN}", (key,), {}, {})
