"""The service's contract at the HTTP level: bad inputs get 4xx JSON errors that name the
field and the fix; the token guards every endpoint but health and the schema; the
OpenAPI schema lists the endpoints; ``import allocator`` never imports fastapi."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from service_support import AUTH, TOKEN, write_scripted

from allocator.errors import ParameterError
from allocator.service import BackgroundServer, create_app
from allocator.service.schemas import MAX_HISTORY

REPO = Path(__file__).resolve().parents[3]
SAMPLE = {"kind": "sample", "arm": "small", "answer": "7", "cost": 1.0}


@dataclass(frozen=True)
class Bad:
    """One bad request: what is sent, the status expected, and the field it must name."""

    name: str
    status: int
    field: str | None
    json: Any = None
    content: Any = None
    path: str = "/v1/decide"
    headers: dict[str, str] = field(default_factory=lambda: dict(AUTH))
    error: str | None = None


def chunks(total: int, size: int = 65_536) -> Iterator[bytes]:
    """A body sent chunked (no Content-Length): only the streamed count can refuse it."""
    for _ in range(total // size):
        yield b" " * size


CASES = [
    Bad("lambda of the wrong type", 422, "lambda", {"lambda": "high"}),
    Bad("lambda given as a numeric string", 422, "lambda", {"lambda": "0.1"}),
    Bad("negative lambda", 422, "lambda", {"lambda": -0.1}),
    # one status for every invalid value, whoever finds it (issue 14, item 20: the schema
    # answered 422, the oracle 400)
    Bad("lambda outside the training range", 422, "lambda", {"lambda": 5.0},
        error="invalid_request"),
    Bad("target_cost without calibration", 422, "target_cost", {"target_cost": 3.0},
        error="invalid_request"),
    Bad("budget lambda outside the training range", 422, "lambda", {"lambda": 5.0},
        path="/v1/budget", error="invalid_request"),
    Bad("unknown top-level field", 422, "lamda", {"lamda": 0.1}),
    Bad("unknown field in an event", 422, "history.0.colour",
        {"history": [{**SAMPLE, "colour": "red"}]}),
    Bad("unknown event kind", 422, "history.0.kind",
        {"history": [{"kind": "think", "cost": 1.0}]}),
    Bad("event without kind", 422, "history.0.kind", {"history": [{"cost": 1.0}]}),
    Bad("unknown arm in an event", 422, "history.0.arm",
        {"history": [{**SAMPLE, "arm": "huge"}]}),
    Bad("sample without arm on a two-arm bundle", 422, "history.1.arm",
        {"history": [SAMPLE, {"kind": "sample", "cost": 1.0}]}),
    Bad("unknown served arm", 422, "arms.1", {"arms": ["small", "huge"]}),
    Bad("prior missing an arm", 422, "prior", {"prior": {"small": 0.5}}),
    Bad("prior above 1", 422, "prior.small", {"prior": {"small": 1.5, "large": 0.5}}),
    Bad("negative cost", 422, "history.0.cost", {"history": [{**SAMPLE, "cost": -1}]}),
    Bad("infinite cost", 422, "history.0.cost", content=b'{"history": [{"kind": "sample", '
        b'"arm": "small", "cost": 1e999}]}'),
    Bad("metadata NaN", 422, "metadata.x", content=b'{"metadata": {"x": NaN}}'),
    Bad("metadata infinity in a batch", 422, "metadata.0.x",
        content=b'{"n_queries": 1, "total_budget": 5, "metadata": [{"x": -Infinity}]}',
        path="/v1/allocate"),
    Bad("metadata key spelled like an event kind", 422, "metadata.0.verify",
        {"n_queries": 1, "total_budget": 5, "metadata": [{"verify": [1]}]},
        path="/v1/allocate"),
    Bad("costs whose sum overflows", 422, "history",
        {"history": [{**SAMPLE, "cost": 1e308}, {**SAMPLE, "cost": 1e308}]}),
    Bad("missing cost", 422, "history.0.cost",
        {"history": [{"kind": "sample", "arm": "small"}]}),
    Bad("answer of the wrong type", 422, "history.0.answer",
        {"history": [{**SAMPLE, "answer": [1, 2]}]}),
    Bad("answer too long", 422, "history.0.answer",
        {"history": [{**SAMPLE, "answer": "x" * 5000}]}),
    Bad("history too long", 422, "history", {"history": [SAMPLE] * (MAX_HISTORY + 1)}),
    Bad("verify of a candidate not drawn", 422, "history.1.scores",
        {"history": [SAMPLE, {"kind": "verify", "scores": {"5": 0.9}, "cost": 0.1}]}),
    Bad("verify score key not an index", 422, "history.1.scores.first (key)",
        {"history": [SAMPLE, {"kind": "verify", "scores": {"first": 0.9}, "cost": 0.1}]}),
    Bad("max_samples negative", 422, "max_samples", {"max_samples": -1}),
    Bad("boolean given as a string", 422, "supports_verify", {"supports_verify": "yes"}),
    Bad("malformed JSON", 422, "body", content=b'{"lambda": 0.1,,}'),
    Bad("a list instead of an object", 422, "body", [1, 2]),
    Bad("huge body with Content-Length", 413, "body", content=b" " * 1_200_000,
        error="payload_too_large"),
    Bad("huge body sent chunked", 413, "body", content=chunks(1_400_000),
        error="payload_too_large"),
    Bad("missing token", 401, None, {}, headers={}, error="unauthorized"),
    Bad("wrong token", 401, None, {}, headers={"Authorization": "Bearer nope"},
        error="unauthorized"),
    Bad("not a bearer token", 401, None, {}, headers={"Authorization": f"Basic {TOKEN}"}),
    Bad("budget max_samples 0", 422, "max_samples", {"max_samples": 0}, path="/v1/budget"),
    Bad("allocate negative total", 422, "total_budget",
        {"n_queries": 2, "total_budget": -5}, path="/v1/allocate"),
    Bad("allocate queries and n_queries", 422, "queries",
        {"queries": ["a"], "n_queries": 1, "total_budget": 5}, path="/v1/allocate"),
    Bad("allocate priors of another length", 422, "priors",
        {"n_queries": 2, "total_budget": 5, "priors": [{"small": 0.5, "large": 0.5}]},
        path="/v1/allocate"),
    Bad("allocate unknown arm", 422, "arm", {"n_queries": 2, "total_budget": 5,
                                             "arm": "huge"}, path="/v1/allocate"),
    Bad("reload without token", 401, None, {}, path="/v1/admin/reload", headers={}),
    Bad("reload with an unknown field", 422, "forse", {"forse": True},
        path="/v1/admin/reload"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_requests_get_clear_errors(scripted_server: BackgroundServer, case: Bad) -> None:
    headers = {**case.headers}
    if case.content is not None and not isinstance(case.content, Iterator):
        headers["Content-Type"] = "application/json"
    with httpx.Client(base_url=scripted_server.url, timeout=30) as http:
        response = http.post(case.path, json=case.json, content=case.content,
                             headers=headers)
    assert response.status_code == case.status, response.text
    body = response.json()
    assert set(body) >= {"error", "message", "fields"} and body["message"]
    if case.error is not None:
        assert body["error"] == case.error
    if case.status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in body["message"] or "wrong" in body["message"]
    if case.field is not None:
        named = [problem["field"] for problem in body["fields"]]
        assert case.field in named, body
        problem = body["fields"][named.index(case.field)]
        assert problem["fix"] and problem["problem"]
        assert case.field.split(" ")[0] in body["message"] or case.status == 413


def test_the_errors_say_how_to_fix_them(scripted_client: httpx.Client) -> None:
    client = scripted_client
    body = client.post("/v1/decide", json={"lamda": 0.1, "history": [
        {"kind": "think", "cost": 1}]}).json()
    fixes = {problem["field"]: problem["fix"] for problem in body["fields"]}
    assert "remove 'lamda'" in fixes["lamda"] and "'lambda'" in fixes["lamda"]
    assert "'sample', 'refine', 'verify'" in fixes["history.0.kind"]
    body = client.post("/v1/decide", json={"history": [{**SAMPLE, "arm": "huge"}]}).json()
    assert "['large', 'small']" in body["fields"][0]["fix"]
    assert client.get("/v1/nowhere").json()["error"] == "not_found"


def test_health_is_minimal_without_the_token(scripted_server: BackgroundServer,
                                             scripted_oracle) -> None:
    """Without the token health says only that the service is up; with it, the served
    bundle and the reloads; a wrong token is refused (issue 14, item 20: health exposed
    paths and run ids to anyone)."""
    server, oracle = scripted_server, scripted_oracle
    assert httpx.get(f"{server.url}/v1/health").json() == {"status": "ok"}
    wrong = httpx.get(f"{server.url}/v1/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    body = httpx.get(f"{server.url}/v1/health", headers=AUTH).json()
    model = body["model"]
    assert body["status"] == "ok" and model["arms"] == list(oracle.arms)
    assert model["lambda_range"] == list(oracle.lambda_range)
    assert len(model["bundle_id"]) == 16 and model["version"] is None
    assert body["reload"] == {"interval": None, "reloads": 0, "last_error": None,
                              "last_error_at": None}
    decided = httpx.post(f"{server.url}/v1/decide", json={}, headers=AUTH).json()
    assert decided["model"] == {"bundle_id": model["bundle_id"], "version": None}


def test_health_is_full_without_authentication(scripted_oracle) -> None:
    """A server started without a token (loopback) answers every detail to anyone."""
    with BackgroundServer(create_app(scripted_oracle.bundle.path)) as server:
        body = httpx.get(f"{server.url}/v1/health").json()
    assert body["status"] == "ok" and body["model"]["arms"] == list(scripted_oracle.arms)
    assert body["reload"]["reloads"] == 0


def test_the_openapi_schema_lists_the_endpoints(scripted_server: BackgroundServer) -> None:
    schema = httpx.get(f"{scripted_server.url}/openapi.json").json()  # no token
    assert {"/v1/decide", "/v1/budget", "/v1/allocate", "/v1/health",
            "/v1/admin/reload"} <= set(schema["paths"])
    decide = schema["paths"]["/v1/decide"]["post"]
    assert decide["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DecideRequest")
    assert {"200", "401", "413", "422"} <= set(decide["responses"])
    request = schema["components"]["schemas"]["DecideRequest"]
    assert request["additionalProperties"] is False and "lambda" in request["properties"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]
    # health takes the token optionally (details with it); anyone may call it
    assert "401" in schema["paths"]["/v1/health"]["get"]["responses"]


def test_create_app_refuses_bad_arguments(tmp_path: Path) -> None:
    bundle = write_scripted(tmp_path / "bundle")
    # a token with a trailing newline (a secret read from a file) could never be sent:
    # HTTP strips header values, so every request would get 401
    for kwargs, name in (({"token": ""}, "token"), ({"token": "secret\n"}, "token"),
                         ({"token": " secret"}, "token"),
                         ({"reload_interval": 0}, "reload_interval"),
                         ({"max_body_bytes": 10}, "max_body_bytes")):
        with pytest.raises(ParameterError, match=name):
            create_app(bundle, **kwargs)


def test_importing_allocator_never_imports_fastapi() -> None:
    code = """
import sys
import allocator, allocator.cli, allocator.oracle
assert not {"fastapi", "uvicorn", "starlette"} & set(sys.modules), "runtime imported fastapi"
import allocator.service
from fastapi import FastAPI
assert "mlflow" not in sys.modules
made = [name for name, module in sys.modules.items() if name.startswith("allocator.service")
        for value in vars(module).values() if isinstance(value, FastAPI)]
assert not made, made
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_non_ascii_token_can_be_sent(tmp_path: Path) -> None:
    # clients send the token's UTF-8 bytes; the server must compare those bytes, not
    # the header as the framework decoded it (Latin-1)
    token = "pässwort-€"
    app = create_app(write_scripted(tmp_path / "bundle", ("large", "small")), token=token)
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url) as http:
        def status(credentials: bytes) -> int:
            return http.post("/v1/decide", json={},
                             headers={"Authorization": b"Bearer " + credentials}).status_code

        assert status(token.encode("utf-8")) == 200
        assert status("pässwort-x".encode()) == 401
        assert status(token.encode("latin-1", "replace")) == 401


def test_errors_are_json_with_the_documented_shape(scripted_client: httpx.Client) -> None:
    response = scripted_client.post("/v1/decide", content=b"nope",
                           headers={"Content-Type": "application/json"})
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.text)
    assert body["fields"][0]["field"] == "body" and "JSON" in body["fields"][0]["fix"]


def test_the_public_api() -> None:
    import allocator.service

    assert sorted(allocator.service.__all__) == [
        "API_PREFIX", "BackgroundServer", "INSTALL_HINT", "OracleHolder", "ReloadOutcome",
        "Served", "create_app", "run_server"]


#: The request bodies (issue 14, item 19: their fields were documented only in code).
REQUEST_BODIES = ["DecideRequest", "AttemptEvent", "VerifyEvent", "BudgetRequest",
                  "AllocateRequest", "ReloadRequest"]


@pytest.mark.parametrize("name", REQUEST_BODIES)
def test_every_request_field_is_described(scripted_server: BackgroundServer,
                                          name: str) -> None:
    """In the OpenAPI schema (what /docs shows) and in the README's field table."""
    schema = httpx.get(f"{scripted_server.url}/openapi.json").json()
    properties = schema["components"]["schemas"][name]["properties"]
    undescribed = [field for field, spec in properties.items() if not spec.get("description")]
    assert not undescribed, f"{name}: {undescribed}"
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("<!-- request-fields -->"):
                   readme.index("<!-- /request-fields -->")]
    rows = {cell.strip().strip("`"): line.split("|")[2]
            for line in table.splitlines() if line.startswith("| `")
            for cell in line.split("|")[1].split(",")}
    body = name.removesuffix("Request").removesuffix("Event").lower()
    for key in properties:
        assert key in rows, f"README's request-field table lacks {name}.{key}"
        assert body in rows[key], f"README: {key} is not marked as in {body}"
