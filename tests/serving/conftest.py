"""Fixtures of the service tests: one tiny trained workspace per session, one client per module."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from servingkit import Built, build_workspace


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The trained workspace (servingkit.build_workspace; about two minutes, once)."""
    return build_workspace(tmp_path_factory.mktemp("serving") / "home")


@pytest.fixture(scope="session")
def client(built: Built) -> Iterator[Any]:
    """A TestClient over the service's ASGI app (no server), started on the built workspace.

    One per session: BentoML keeps one current service per process
    (``bentoml.get_current_service``, which the gate reads). ``test_tenancy.py`` starts a
    federation's service beside it and makes this one current again when it is done.
    """
    from starlette.testclient import TestClient

    from serving.service import NbpService

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NBP_HOME", str(built.ws.home))
        mp.setenv("NBP_TOKENS", built.tokens_env)
        mp.setenv("BENTOML_HOME", str(built.ws.bentoml_home))
        mp.delenv("NBP_CONFIG", raising=False)
        with TestClient(NbpService.to_asgi(), raise_server_exceptions=False) as c:
            mp.undo()
            yield c
