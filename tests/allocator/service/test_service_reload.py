"""Hot swap by MLflow alias, with a real SQLite registry: version 1 (arms a, b) and
version 2 (arms x, y) of one registered model, the server started on
``models:/ttc-serve@prod``; the alias moves while client threads keep sending requests.
Zero errors, and the answers switch from version 1 to version 2 once (never back). A
reload to a version that holds no bundle fails, is reported, and the old bundle stays.
Then the same through the poller (``reload_interval``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from service_support import AUTH, TOKEN, write_scripted

from allocator.service import BackgroundServer, create_app

NAME = "ttc-serve"
URI = f"models:/{NAME}@prod"
ARMS = {"1": ("a", "b"), "2": ("x", "y")}

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings(
    "ignore:The ``noload`` loader strategy:DeprecationWarning")]  # mlflow's


@dataclass
class Registry:
    client: object
    uri: str
    versions: dict[str, str]  # label -> version

    def point(self, label: str) -> None:
        """Move the alias ``prod`` to a version."""
        self.client.set_registered_model_alias(NAME, "prod", self.versions[label])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Versions 1 and 2 (two scripted bundles), and "broken" (artifacts without a bundle)."""
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("MLFLOW_TRACKING_URI", uri)  # nothing written in the working dir
        patch.setenv("MLFLOW_REGISTRY_URI", uri)
        from mlflow import MlflowClient

        client = MlflowClient(uri, registry_uri=uri)
        experiment = client.create_experiment("serve", artifact_location=str(root / "art"))
        client.create_registered_model(NAME)
        versions = {}
        for label in ("1", "2", "broken"):
            run = client.create_run(experiment).info.run_id
            if label == "broken":
                client.log_text(run, "not a bundle", "model/readme.txt")
            else:
                bundle = write_scripted(root / f"bundle-{label}", ARMS[label])
                client.log_artifacts(run, str(bundle), "model/bundle")
            client.set_terminated(run)
            versions[label] = str(client.create_model_version(
                NAME, source=f"runs:/{run}/model", run_id=run).version)
        assert versions["1"] == "1" and versions["2"] == "2"
        yield Registry(client, uri, versions)


class Hammer:
    """Client threads sending decide requests until stopped, recording each answer."""

    def __init__(self, url: str, threads: int = 4) -> None:
        self.url, self.stop = url, threading.Event()
        self.records: list[list[tuple[int, str | None, str | None]]] = [[] for _ in
                                                                         range(threads)]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(threads)]

    def _run(self, i: int) -> None:
        with httpx.Client(base_url=self.url, headers=AUTH, timeout=30) as http:
            while not self.stop.is_set():
                try:
                    response = http.post("/v1/decide", json={"max_samples": 3})
                    body = response.json()
                    record = (response.status_code, body.get("model", {}).get("version"),
                              body.get("action", {}).get("arm"))
                except (httpx.HTTPError, ValueError) as error:
                    record = (0, None, repr(error))
                self.records[i].append(record)

    def count(self) -> int:
        return min(len(records) for records in self.records)

    def wait_for(self, count: int, limit: float = 60.0) -> None:
        """Wait until every thread recorded ``count`` answers (a bound, not a timing)."""
        deadline = time.monotonic() + limit
        while self.count() < count:
            assert time.monotonic() < deadline, "the client threads made no progress"
            time.sleep(0.01)

    def __enter__(self) -> Hammer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def wait_until(condition: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_moving_the_alias_and_reloading_drops_no_request(registry: Registry) -> None:
    registry.point("1")
    app = create_app(URI, token=TOKEN, tracking_uri=registry.uri)
    with BackgroundServer(app) as server, httpx.Client(
            base_url=server.url, headers=AUTH, timeout=60) as http:
        assert http.get("/v1/health").json()["model"]["version"] == "1"
        with Hammer(server.url) as hammer:
            hammer.wait_for(20)
            registry.point("2")
            response = http.post("/v1/admin/reload")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["reloaded"] and body["previous"]["version"] == "1"
            assert body["current"]["version"] == "2" and body["current"]["arms"] == ["x", "y"]
            after = [len(records) for records in hammer.records]
            hammer.wait_for(max(after) + 20)
        for records, cut in zip(hammer.records, after, strict=True):
            assert all(status == 200 for status, _, _ in records), records
            versions = [version for _, version, _ in records]
            switch = versions.index("2")
            assert 0 < switch <= cut  # some answers from each version...
            assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}  # ...once
            assert all(arm in ARMS[version] for _, version, arm in records)

        # Unchanged alias: nothing to do. Forced: loaded again.
        assert http.post("/v1/admin/reload").json()["reloaded"] is False
        assert http.post("/v1/admin/reload", json={"force": True}).json()["reloaded"]

        # A version without a bundle: the reload fails, version 2 keeps serving.
        registry.point("broken")
        failed = http.post("/v1/admin/reload")
        assert failed.status_code == 502
        error = failed.json()
        assert error["error"] == "reload_failed" and "no policy bundle" in error["message"]
        assert error["serving"]["version"] == "2"
        health = http.get("/v1/health").json()
        assert health["model"]["version"] == "2" and health["reload"]["reloads"] == 2
        assert "no policy bundle" in health["reload"]["last_error"]
        decided = http.post("/v1/decide", json={})
        assert decided.status_code == 200 and decided.json()["model"]["version"] == "2"
        assert httpx.post(f"{server.url}/v1/admin/reload").status_code == 401  # no token


def test_the_poller_follows_the_alias(registry: Registry) -> None:
    registry.point("1")
    app = create_app(URI, token=TOKEN, tracking_uri=registry.uri, reload_interval=0.2)
    with BackgroundServer(app) as server, httpx.Client(
            base_url=server.url, headers=AUTH, timeout=60) as http:

        def health() -> dict:
            return http.get("/v1/health").json()

        assert health()["model"]["version"] == "1" and health()["reload"]["interval"] == 0.2
        with Hammer(server.url, threads=2) as hammer:
            hammer.wait_for(10)
            registry.point("2")
            wait_until(lambda: health()["model"]["version"] == "2", "version 2")
            count = max(len(records) for records in hammer.records)
            hammer.wait_for(count + 10)
            registry.point("broken")
            wait_until(lambda: health()["reload"]["last_error"] is not None, "the failure")
            assert health()["model"]["version"] == "2"  # still served
            registry.point("1")
            wait_until(lambda: health()["model"]["version"] == "1", "version 1 again")
            assert health()["reload"]["last_error"] is None
            count = max(len(records) for records in hammer.records)
            hammer.wait_for(count + 10)
        for records in hammer.records:
            assert all(status == 200 for status, _, _ in records), records
            assert all(arm in ARMS[version] for _, version, arm in records)
            assert {version for _, version, _ in records} == {"1", "2"}


def test_a_bundle_directory_rewritten_in_place_is_reloaded(tmp_path: Path) -> None:
    """A directory source is served from a snapshot: rewriting it changes nothing until
    a reload, which then swaps in the new content."""
    bundle = write_scripted(tmp_path / "bundle", ("a", "b"))
    app = create_app(bundle, token=TOKEN)
    with BackgroundServer(app) as server, httpx.Client(
            base_url=server.url, headers=AUTH, timeout=60) as http:
        assert http.post("/v1/decide", json={}).json()["action"]["arm"] == "b"
        write_scripted(bundle, ("x", "y"))
        assert http.post("/v1/decide", json={}).json()["action"]["arm"] == "b"  # snapshot
        body = http.post("/v1/admin/reload").json()
        assert body["reloaded"] and body["current"]["arms"] == ["x", "y"]
        assert http.post("/v1/decide", json={}).json()["action"]["arm"] == "y"


def test_a_request_holding_the_old_bundle_finishes_on_it(tmp_path: Path) -> None:
    """What a request read before a swap keeps answering (its snapshot stays on disk),
    while new reads get the new bundle."""
    from allocator.service import OracleHolder
    from allocator.service.operations import decide
    from allocator.service.schemas import DecideRequest
    from allocator.service.state import bundle_id

    bundle = write_scripted(tmp_path / "bundle", ("a", "b"))
    holder = OracleHolder(bundle)
    try:
        before = holder.load()
        write_scripted(bundle, ("x", "y"))
        outcome = holder.reload()
        assert outcome.reloaded and outcome.previous is before
        # The served identity is the verified bundle's, the one the next poll compares.
        assert holder.current.bundle_id == bundle_id(bundle) == (
            holder.current.oracle.bundle.bundle_id) != before.bundle_id
        request = DecideRequest.model_validate({"max_samples": 2})
        assert decide(before, request).action.arm == "b"  # in flight: the old bundle
        assert decide(holder.current, request).action.arm == "y"
        assert holder.reload().reloaded is False  # unchanged directory
    finally:
        holder.close()
