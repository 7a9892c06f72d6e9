"""The REST API fuzzed from its own OpenAPI document: no request gets a 5xx.

Schemathesis generates requests for every operation of ``/openapi.json``,
valid and not, and sends them to a real ``tactline serve`` on a loopback
port, as a supervisor (who may call every route), as an agent and with no
credentials. Whatever it sends, the answer is a 2xx or a 4xx with an error
body, never a server error.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.conftest import ROOT, TEST_SECRET, ServeProcess, free_port
from tests.server.support import PASSWORD, make_account

EXAMPLES_PER_OPERATION = 25


@pytest.fixture(scope="module")
def api_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    base = redis_url.rsplit("/", 1)[0] if redis_url.count("/") > 2 else redis_url
    url = f"{base}/15"
    import redis as redis_sync

    with redis_sync.Redis.from_url(url) as r:
        r.flushdb()
    for name, role in (("fuzz-boss", "supervisor"), ("fuzz-agent", "agent")):
        asyncio.run(make_account(url, name, role=role))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTLINE_")}
    env.update(
        {
            "TACTLINE_SECRET": TEST_SECRET,
            "TACTLINE_DATA_DIR": str(tmp_path_factory.mktemp("fuzz") / "var"),
            "TACTLINE_LOG_LEVEL": "warning",
            "TACTLINE_REDIS_URL": url,
            "PYTHONPATH": str(ROOT),
            "TACTLINE_SITES": '{"acme": {"origins": ["https://acme.example"], '
            '"secret": "acme-site-secret"}}',
            "TACTLINE_COACH": "false",
            # Fuzzing logs in and creates visitors far faster than a person.
            "TACTLINE_RATE_IP_PER_S": "100000",
            "TACTLINE_RATE_IP_BURST": "100000",
            "TACTLINE_LOGIN_ATTEMPTS_PER_MIN": "100000",
        }
    )
    server = ServeProcess(env, free_port()).start()
    try:
        yield server
    finally:
        server.stop()


def _token(base: str, name: str) -> str:
    r = httpx.post(base + "/api/login", json={"username": name, "password": PASSWORD}, timeout=5)
    r.raise_for_status()
    return str(r.json()["token"])


@pytest.fixture(scope="module")
def credentials(api_server: ServeProcess) -> dict[str, dict[str, str]]:
    return {
        "supervisor": {"Authorization": "Bearer " + _token(api_server.base, "fuzz-boss")},
        "agent": {"Authorization": "Bearer " + _token(api_server.base, "fuzz-agent")},
        "anonymous": {},
    }


@pytest.fixture(scope="module")
def rest_schema(api_server: ServeProcess) -> Any:
    return schemathesis.openapi.from_url(api_server.base + "/openapi.json")


def test_no_request_gets_a_server_error(
    rest_schema: Any, api_server: ServeProcess, credentials: dict[str, dict[str, str]]
) -> None:
    tried: dict[str, int] = {}

    def send(case: Any) -> None:
        name = f"{case.method} {case.path}"
        tried[name] = tried.get(name, 0) + 1
        for who, auth in credentials.items():
            headers = {**(case.headers or {}), **auth}
            # POST /api/rules/reload compiles the rules: seconds, the first time cold.
            response = case.call(base_url=api_server.base, headers=headers, timeout=60)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} as {who} -> {response.status_code}: "
                f"{response.text[:300]}\n{api_server.output()[-1500:]}"
            )
            if response.status_code >= 400:
                body = response.json()
                assert body.get("code") and body.get("message"), (who, name, body)

    operations = [result.ok() for result in rest_schema.get_all_operations()]
    assert operations
    # Logging out ends the sessions the other operations are fuzzed with: it goes last.
    operations.sort(key=lambda op: op.path == "/api/logout")
    fuzz = settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    for operation in operations:

        @fuzz
        @given(case=operation.as_strategy())
        def each(case: Any) -> None:
            send(case)

        each()
    # Every operation was exercised, not only the first few.
    assert len(tried) == len(operations), tried
