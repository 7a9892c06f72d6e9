"""End to end: real ``tactline serve`` processes sharing one Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from tests.conftest import ROOT, RedisProcess, ServeProcess
from tests.server.support import PASSWORD, Client, agent, connect, visitor_token

pytestmark = pytest.mark.slow

# Timeouts
REPLACEMENT_TIMEOUT_S = 60.0  # a new worker imports the app before it accepts

Serve = Callable[..., ServeProcess]


async def stored_messages(redis_url: str, conv: str) -> list[dict[str, str]]:
    r = Redis.from_url(redis_url, decode_responses=True)
    try:
        rows = await r.xrange(f"{{conv:{conv}}}:events")
    finally:
        await r.aclose()
    return [json.loads(f["e"]) | {"seq": s} for s, f in rows if '"type":"message"' in f["e"]]


async def test_two_server_processes_share_redis(redis_db: str, serve_process: Serve) -> None:
    a = serve_process(redis_db)
    b = serve_process(redis_db)
    ag = await agent(b, redis_db, "jelena")
    vi = await connect(a.ws, "/ws/visitor", await visitor_token(a.base))
    ack = await vi.say("hello from process A")
    conv = ack["conversation"]
    await ag.expect("assignment", conversation=conv)
    await vi.expect("assigned")
    reply = await ag.say("hello from process B", conversation=conv)
    assert (await vi.expect("message", id=reply["ref"]))["seq"] == reply["seq"]
    await vi.send(type="typing")
    await ag.expect("typing")
    await vi.close()
    await ag.close()


async def test_kill_9_mid_chat_then_restart_loses_and_doubles_nothing(
    redis_db: str, serve_process: Serve
) -> None:
    a = serve_process(redis_db)
    b = serve_process(redis_db)
    ag = await agent(b, redis_db, "jelena")
    token = await visitor_token(a.base)
    vi = await connect(a.ws, "/ws/visitor", token)
    acked = {}
    for i in range(10):
        ack = await vi.say(f"before {i}", msg_id=f"m{i}")
        acked[ack["ref"]] = ack["seq"]
    conv = ack["conversation"]
    assignment = await ag.expect("assignment", conversation=conv)
    last_seen = (await vi.expect("message", id="m9"))["seq"]
    # In flight when the server dies: sent, maybe stored, never acknowledged.
    for i in range(10, 15):
        await vi.send(type="message", id=f"m{i}", text=f"in flight {i}")
    a.kill9()
    a.start()  # same port, same Redis
    vi = await connect(a.ws, "/ws/visitor", token, resume={conv: last_seen})
    [view] = vi.welcome["conversations"]
    replayed = [e["id"] for e in view["events"] if e["type"] == "message"]
    for i in range(10, 15):  # the client resends everything unacknowledged
        ack = await vi.say(f"in flight {i}", msg_id=f"m{i}")
        acked[ack["ref"]] = ack["seq"]
    stored = await stored_messages(redis_db, conv)
    assert [m["id"] for m in stored] == [f"m{i}" for i in range(15)]
    assert {m["id"]: m["seq"] for m in stored} == acked
    assert set(replayed) <= {f"m{i}" for i in range(10, 15)}
    # The agent, on the surviving process, saw each message exactly once.
    got = [e["id"] for e in assignment["events"] if e["type"] == "message"]
    got += [f["id"] for f in ag.skipped if f["type"] == "message"]
    got += [f["id"] for f in await ag.quiet("message", within=1.0)]
    assert sorted(got) == sorted(f"m{i}" for i in range(15))
    await vi.close()
    await ag.close()


async def test_redis_restart_keeps_acknowledged_messages(serve_process: Serve) -> None:
    redis = RedisProcess()
    redis.start()
    try:
        srv = serve_process(redis.url)
        ag = await agent(srv, redis.url, "jelena")
        token = await visitor_token(srv.base)
        vi = await connect(srv.ws, "/ws/visitor", token)
        first = await vi.say("before the restart")
        conv = first["conversation"]
        await ag.expect("assignment", conversation=conv)
        seen = await vi.expect("message", id=first["ref"])
        redis.stop()  # SHUTDOWN: the append-only file is flushed
        await vi.send(type="message", id="during", text="while Redis is down")
        err = await vi.expect("error")
        assert (err["code"], err["ref"]) == ("internal", "during")
        redis.start()
        for _ in range(50):
            try:
                ack = await vi.say(
                    "while Redis is down",
                    msg_id="during",
                )
                break
            except TimeoutError:
                continue
        assert ack["duplicate"] is False
        got = await ag.expect("message", id="during", timeout=10)
        assert got["seq"] == ack["seq"]
        vi2 = await connect(srv.ws, "/ws/visitor", token, resume={conv: seen["seq"]})
        [view] = vi2.welcome["conversations"]
        assert [e["id"] for e in view["events"] if e["type"] == "message"] == ["during"]
        stored = await stored_messages(redis.url, conv)
        assert [m["id"] for m in stored] == [first["ref"], "during"]
        for c in (vi, vi2, ag):
            await c.close()
    finally:
        redis.cleanup()


async def test_workers_share_the_chat(redis_db: str, serve_process: Serve) -> None:
    srv = serve_process(redis_db, workers=2)
    ag = await agent(srv, redis_db, "jelena")
    visitors = [
        await connect(srv.ws, "/ws/visitor", await visitor_token(srv.base)) for _ in range(3)
    ]
    convs = [(await v.say(f"hi {i}"))["conversation"] for i, v in enumerate(visitors)]
    for conv in convs:
        await ag.expect("assignment", conversation=conv)
    for v, conv in zip(visitors, convs, strict=True):
        reply = await ag.say("hello", conversation=conv)
        assert (await v.expect("message", id=reply["ref"]))["seq"] == reply["seq"]
    for c in (*visitors, ag):
        await c.close()


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, ppid, …)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _workers(parent: int) -> list[int]:
    """The worker processes a ``tactline serve --workers N`` started."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat is not None and int(stat[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def _sockets(port: int, state: str) -> set[str]:
    """Inodes of the TCP sockets on local ``port`` in ``state`` (01 established, 0A listening)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as fh:
            for line in list(fh)[1:]:
                fields = line.split()
                local, st, inode = fields[1], fields[3], fields[9]
                if st == state and int(local.rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{inode}]")
    return inodes


def _connections_by_process(pids: list[int], port: int) -> dict[int, int]:
    """Established TCP connections on local ``port`` held by each of ``pids``."""
    inodes = _sockets(port, "01")
    counts = {}
    for pid in pids:
        fds = Path(f"/proc/{pid}/fd")
        counts[pid] = sum(1 for fd in fds.iterdir() if _readlink(fd) in inodes)
    return counts


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or exited and waiting to be reaped (a zombie)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


async def _visitors(srv: ServeProcess, n: int) -> list[Client]:
    clients = []
    for _ in range(n):
        client = await connect(srv.ws, "/ws/visitor", await visitor_token(srv.base))
        assert client.welcome["type"] == "welcome", client.welcome
        clients.append(client)
    return clients


async def _wait_for_workers(srv: ServeProcess, n: int) -> list[int]:
    """The workers' pids, once each of them listens on its socket."""
    assert srv.proc is not None
    for _ in range(300):
        pids = _workers(srv.proc.pid)
        if len(pids) == n and len(_sockets(srv.port, "0A")) == n:
            return pids
        await asyncio.sleep(0.1)
    raise AssertionError(f"{n} workers did not start listening: {srv.output()}")


async def test_workers_each_take_a_share_of_new_connections(
    redis_db: str, serve_process: Serve
) -> None:
    # One after the other, as a page full of visitors arrives: with one shared
    # listening socket, the process that waited last took nearly all of them.
    srv = serve_process(redis_db, workers=2)
    pids = await _wait_for_workers(srv, 2)
    clients = await _visitors(srv, 40)
    counts = _connections_by_process(pids, srv.port)
    assert sum(counts.values()) == 40, counts
    assert min(counts.values()) >= 8, counts
    for c in clients:
        await c.close()


async def _patient_visitor(srv: ServeProcess) -> websockets.ClientConnection:
    """A visitor who waits as long as a browser would for a worker to come back."""
    async with httpx.AsyncClient(timeout=REPLACEMENT_TIMEOUT_S) as http:
        r = await http.post(srv.base + "/api/visitors", json={"site": "acme"})
        r.raise_for_status()
    ws = await websockets.connect(srv.ws + "/ws/visitor", open_timeout=REPLACEMENT_TIMEOUT_S)
    await ws.send(json.dumps({"v": 1, "type": "hello", "token": r.json()["token"]}))
    welcome = json.loads(await asyncio.wait_for(ws.recv(), REPLACEMENT_TIMEOUT_S))
    assert welcome["type"] == "welcome", welcome
    return ws


async def test_a_killed_worker_is_replaced_on_its_own_socket(
    redis_db: str, serve_process: Serve
) -> None:
    srv = serve_process(redis_db, workers=2)
    pids = await _wait_for_workers(srv, 2)
    os.kill(pids[0], 9)
    # Connections made while it is replaced wait in its socket's backlog: none is refused.
    clients = [await _patient_visitor(srv) for _ in range(20)]
    assert srv.proc is not None
    after = _workers(srv.proc.pid)
    assert len(after) == 2 and pids[0] not in after, (pids, after)
    counts = _connections_by_process(after, srv.port)
    assert sum(counts.values()) == 20 and min(counts.values()) >= 1, counts
    for c in clients:
        await c.close()


async def test_workers_stop_when_their_supervisor_is_killed(
    redis_db: str, serve_process: Serve
) -> None:
    srv = serve_process(redis_db, workers=2)
    pids = await _wait_for_workers(srv, 2)
    assert srv.proc is not None
    srv.proc.kill()  # kill -9 of the supervisor alone, not of its process group
    srv.proc.wait(10)
    for _ in range(150):
        if not any(_alive(pid) for pid in pids) and not _sockets(srv.port, "0A"):
            break
        await asyncio.sleep(0.1)
    running = [pid for pid in pids if _alive(pid)]
    for pid in running:  # leave nothing behind, whatever the outcome
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    assert running == [], "workers outlived their supervisor"
    assert not _sockets(srv.port, "0A")


async def test_a_second_server_on_a_taken_port_fails_instead_of_sharing_it(
    redis_db: str, serve_process: Serve, tmp_path: Path
) -> None:
    # Sockets that allow SO_REUSEPORT would let a second server take a share of the
    # first one's connections, unnoticed: it must refuse to start instead.
    first = serve_process(redis_db, workers=2)
    await _wait_for_workers(first, 2)
    env = dict(first.env, TACTLINE_DATA_DIR=str(tmp_path / "second"))
    second = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1",
         "--port", str(first.port), "--workers", "2", "--no-demo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        start_new_session=True,
    )
    try:
        out, err = second.communicate(timeout=60)
    finally:
        if second.poll() is None:  # it started serving: stop it and its workers
            os.killpg(second.pid, 9)
            second.wait(10)
    assert second.returncode == 1, out + err
    assert f"cannot listen on 127.0.0.1:{first.port}" in err
    assert len(_sockets(first.port, "0A")) == 2  # the first server's two, no more


async def test_embedded_redis_persists_and_stops_with_the_server(
    tmp_path: Path, serve_process: Serve
) -> None:
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACTLINE_")}
    env.update({"TACTLINE_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)})
    add = subprocess.run(
        [sys.executable, "-m", "server.cli", "users", "add", "jelena", "--role", "agent"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    assert (data / "redis" / "appendonly.aof").exists() or (data / "redis").exists()
    srv = serve_process(None)  # no TACTLINE_REDIS_URL: embedded Redis
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(
            srv.base + "/api/login", json={"username": "jelena", "password": PASSWORD}
        )
        assert r.status_code == 200
        ready = await http.get(srv.base + "/readyz")
        assert "redis unreachable" not in ready.text
    assert (data / "redis" / "redis.sock").exists()
    srv.stop()
    for _ in range(50):
        if not (data / "redis" / "redis.sock").exists():
            break
        await asyncio.sleep(0.1)
    assert not (data / "redis" / "redis.sock").exists(), srv.output()
