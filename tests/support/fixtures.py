"""Fixture makers: one definition of "a local server for the scope" and of "the stand-in
masterdata with these secrets" for every module that needs one (tests/fakes/,
tests/workflows/servers.py)."""

from __future__ import annotations

import importlib
from contextlib import closing

import pytest


def local_server(factory: str, scope: str = "session"):
    """A fixture that starts `factory` (`"package.module:Class"`, imported on first use, built
    without arguments, with a `close()`) once per `scope` and closes it after. A module that
    counts what its server receives takes one of its own (scope="module")."""
    module_name, _, name = factory.partition(":")

    @pytest.fixture(scope=scope)
    def server():
        with closing(getattr(importlib.import_module(module_name), name)()) as running:
            yield running
    server.__doc__ = f"A {name} for the {scope}."
    return server


def fake_masterdata(secrets: dict[str, str], scope: str = "module"):
    """A fixture of the stand-in masterdata gRPC service (tests/fakes/masterdata.py) holding
    these secrets (name -> value)."""
    @pytest.fixture(scope=scope)
    def masterdata():
        from tests.fakes.masterdata import FakeMasterData

        with closing(FakeMasterData()) as fake:
            for name, value in secrets.items():
                fake.add_secret(name, value)
            yield fake
    return masterdata
