"""Typed models of every message of the contract (generated from protos/ into
`agentmesh_client._generated`, one module per proto package, imported when first used), and
`Model`, their base: `from agentmesh_client.models import Agent, Policy`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from agentmesh_client._generated.models_index import INDEX
from agentmesh_client._model import Model, as_dict

if TYPE_CHECKING:  # for type checkers and editors: every class, as if imported here
    from agentmesh_client._generated.models_agents import *  # noqa: F403
    from agentmesh_client._generated.models_common import *  # noqa: F403
    from agentmesh_client._generated.models_governance import *  # noqa: F403
    from agentmesh_client._generated.models_identity import *  # noqa: F403
    from agentmesh_client._generated.models_integration import *  # noqa: F403
    from agentmesh_client._generated.models_live import *  # noqa: F403
    from agentmesh_client._generated.models_masterdata import *  # noqa: F403
    from agentmesh_client._generated.models_observability import *  # noqa: F403
    from agentmesh_client._generated.models_system import *  # noqa: F403
    from agentmesh_client._generated.models_templates import *  # noqa: F403
    from agentmesh_client._generated.models_tools import *  # noqa: F403
    from agentmesh_client._generated.models_workflows import *  # noqa: F403

__all__ = ["Model", "as_dict", *INDEX]


def __getattr__(name: str) -> Any:
    if name not in INDEX:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agentmesh_client._generated.{INDEX[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
