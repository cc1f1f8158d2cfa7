"""Fixtures of the HTTP service tests, served by real uvicorn on loopback with a token:

- ``server`` / ``client``: one tiny trained bundle for the whole session (the recipe of
  ``tests/training/test_mlflow_model.py``: a 16k-step MaskablePPO and a small difficulty
  predictor, about 2 s);
- ``scripted_server`` / ``scripted_client``: a hand-made bundle (no torch, instant) with
  the same arm names, for the tests of the HTTP contract."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from service_support import AUTH, TOKEN, write_scripted

import allocator
from allocator.oracle import BudgetOracle

if TYPE_CHECKING:
    from allocator.service import BackgroundServer

if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
    # Without the 'serve' extra there is no service to test (the CLI's message for that
    # case is tested by running it with fastapi hidden).
    collect_ignore_glob = ["test_*.py"]


@dataclass(frozen=True)
class Trained:
    bundle: Path
    texts: list[str]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny trained bundle with its difficulty predictor, and the log's query texts."""
    pytest.importorskip("torch")
    from tiny_policy import export_tiny_bundle

    return Trained(*export_tiny_bundle(tmp_path_factory.mktemp("service-bundle")))


@pytest.fixture(scope="session")
def oracle(trained: Trained) -> BudgetOracle:
    """The in-process oracle of the same bundle (the reference of every comparison)."""
    return allocator.load(trained.bundle)


@pytest.fixture(scope="session")
def server(trained: Trained) -> Iterator[BackgroundServer]:
    """The trained bundle served by uvicorn in a thread, with the token required."""
    from allocator.service import BackgroundServer, create_app

    with BackgroundServer(create_app(trained.bundle, token=TOKEN)) as running:
        yield running


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    """An HTTP client of the test server that sends the token."""
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as http:
        yield http


#: The trained bundle's arms (the synthetic log's), reused by the scripted bundle.
ARMS = ("large", "small")


@pytest.fixture(scope="session")
def scripted_oracle(tmp_path_factory: pytest.TempPathFactory) -> BudgetOracle:
    """A hand-made bundle over the arms ``large`` and ``small``."""
    return allocator.load(write_scripted(tmp_path_factory.mktemp("scripted") / "bundle",
                                         ARMS))


@pytest.fixture(scope="session")
def scripted_server(scripted_oracle: BudgetOracle) -> Iterator[BackgroundServer]:
    """The scripted bundle served with the token required."""
    from allocator.service import BackgroundServer, create_app

    with BackgroundServer(create_app(scripted_oracle.bundle.path, token=TOKEN)) as running:
        yield running


@pytest.fixture
def scripted_client(scripted_server: BackgroundServer) -> Iterator[httpx.Client]:
    """An HTTP client of the scripted server that sends the token."""
    with httpx.Client(base_url=scripted_server.url, headers=AUTH, timeout=30) as http:
        yield http
