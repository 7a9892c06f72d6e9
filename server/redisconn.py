"""Connecting to Redis: one server, or a Redis Cluster found behind the same URL.

``TACTLINE_REDIS_URL`` names one node. At start the server asks that node
whether cluster mode is on (``INFO cluster``), unless ``TACTLINE_REDIS_CLUSTER``
says so already, and then talks to the whole cluster through redis-py's
``RedisCluster``: commands go to the node that holds their hash slot. The key
layout (server/store.py) keeps every Lua script and transaction inside one
slot, so nothing else changes.

Pub/sub stays on a plain connection to one node: in a Redis Cluster a
``PUBLISH`` reaches the subscribers of every node, so one node is enough to
hear all of them. That is the named node first; if it is gone, the hub
(server/hub.py) moves to the other nodes the cluster client knows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

log = logging.getLogger("tactline.redis")

#: Socket timeout of every command (a paused Redis must not hang a handler).
SOCKET_TIMEOUT_S = 5.0
#: Connections per process (per node in a cluster).
POOL_SIZE = 64
#: How long a command waits for a free connection before it fails.
POOL_WAIT_S = 5.0
#: Connections per cluster node. redis-py's cluster client fails at once when
#: a node's pool is exhausted rather than waiting, and every routing command
#: goes to the one node holding ``{tl}``, so its pools are larger.
CLUSTER_POOL_SIZE = 1024
#: Connections per other cluster node, for pub/sub only.
PUBSUB_POOL_SIZE = 4
#: How long start-up keeps asking an unreachable Redis whether it is a cluster.
DETECT_FOR_S = 10.0


@dataclass
class RedisConnections:
    #: For commands. In a cluster this is a ``RedisCluster``; the commands the
    #: server uses exist with the same signatures on both.
    commands: Redis
    #: For pub/sub: always one node.
    pubsub: Redis
    cluster: bool
    #: True when Redis could not be asked at start and one server was assumed:
    #: ``/readyz`` then asks again and reports a cluster it is not using.
    guessed: bool = False
    #: The URL of the named node.
    url: str = ""
    #: Pub/sub clients of the other cluster nodes, made when first asked for.
    _others: dict[tuple[str, int], Redis] = field(default_factory=dict)

    def pubsub_fallbacks(self) -> list[Redis]:
        """For pub/sub when the named node is gone: in a cluster, a client for each
        other node the cluster client knows now; with one server, none."""
        if not self.cluster:
            return []
        named = urlsplit(self.url)
        clients = []
        for node in cast(RedisCluster, self.commands).get_nodes():
            where = (str(node.host), int(node.port))
            if where == (named.hostname, named.port):
                continue
            client = self._others.get(where)
            if client is None:
                # The named node's URL (scheme, credentials, options) with the node's address.
                auth, _, _ = named.netloc.rpartition("@")
                netloc = f"{auth}@" if auth else ""
                netloc += f"[{where[0]}]" if ":" in where[0] else where[0]
                client = Redis.from_url(
                    urlunsplit(named._replace(netloc=f"{netloc}:{where[1]}")),
                    decode_responses=True,
                    socket_timeout=SOCKET_TIMEOUT_S,
                    max_connections=PUBSUB_POOL_SIZE,
                )
                self._others[where] = client
            clients.append(client)
        return clients

    async def mode_mismatch(self) -> bool:
        """Whether Redis turned out to be a cluster after one server was assumed."""
        return self.guessed and await is_cluster(self.pubsub)

    async def aclose(self) -> None:
        for client in self._others.values():
            await client.aclose()
            await client.connection_pool.disconnect()
        if self.commands is not self.pubsub:
            await self.commands.aclose()
        await self.pubsub.aclose()
        pool = self.pubsub.connection_pool
        await pool.disconnect()


async def is_cluster(client: Redis) -> bool:
    """Whether the node behind ``client`` runs in cluster mode."""
    info = await client.info("cluster")
    return bool(int(info.get("cluster_enabled", 0)))


async def connect(
    url: str, cluster: bool | None = None, *, detect_for_s: float = DETECT_FOR_S
) -> RedisConnections:
    """Clients for ``url``; ``cluster`` None asks the node, for up to
    ``DETECT_FOR_S`` while it cannot be reached, and then assumes one server
    (``/readyz`` keeps asking and says so if that was wrong)."""
    # Blocking pool: a burst of frames waits for a connection instead of failing.
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        health_check_interval=30,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
    )
    single = Redis(connection_pool=pool)
    guessed = False
    if cluster is None:
        deadline = time.monotonic() + detect_for_s
        while True:
            try:
                cluster = await is_cluster(single)
                break
            except RedisError as exc:
                if time.monotonic() >= deadline:
                    log.warning(
                        "could not ask Redis if it is a cluster (%s); assuming one server "
                        "(set TACTLINE_REDIS_CLUSTER to say)",
                        exc,
                    )
                    cluster, guessed = False, True
                    break
                await asyncio.sleep(0.5)
    if not cluster:
        return RedisConnections(single, single, False, guessed, url)
    whole = RedisCluster.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        max_connections=CLUSTER_POOL_SIZE,
    )
    # RedisCluster has the commands of Redis without being one; see ``commands``.
    conns = RedisConnections(cast(Redis, whole), single, True, url=url)
    try:
        await whole.initialize()
    except BaseException:
        await conns.aclose()
        raise
    log.info("Redis Cluster with %d masters", len(whole.get_primaries()))
    return conns
