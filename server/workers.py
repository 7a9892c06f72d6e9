"""Several server processes on one port, each listening on a socket of its own.

uvicorn's workers share one listening socket, and Linux wakes the process
that waited last: under a burst of new connections one process accepts most
of them while the others idle (seen in ``bench/coaching.py``: one worker at
full load, the other at a fifth of it). With ``SO_REUSEPORT`` every worker
has its own socket on the same port and the kernel spreads new connections
over them by their addresses.

The sockets are bound here, in the supervising process, and stay open while
it runs: a worker that dies is replaced on the same socket, and connections
that arrive meanwhile wait in its backlog instead of being refused.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

log = logging.getLogger("tactline")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
BACKLOG = 2048  # uvicorn's default


def reuse_port_supported() -> bool:
    """Linux spreads connections over ``SO_REUSEPORT`` sockets; other systems
    accept the option but do not balance with it."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """``count`` sockets bound to one address; port 0 takes a free port for all.

    A port that any socket holds is refused, even one of another server whose
    sockets allow ``SO_REUSEPORT``: a second ``tactline serve`` on the same
    port must fail, not quietly take a share of the first one's connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if count > 1 and port != 0:  # a port the kernel picks is nobody else's
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))  # OSError when the port is taken
            port = probe.getsockname()[1]
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if count > 1:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            # Listening at once closes the port to another server's probe while the
            # workers start, and queues the connections that arrive meanwhile.
            sock.listen(BACKLOG)
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _exit_with_parent(parent: int) -> None:
    """Have Linux send this process SIGTERM when the supervisor dies (even of
    ``kill -9``), so no worker goes on serving, unsupervised, on the port."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: workers outlive a killed supervisor
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


class _Worker(Process):
    """A worker process that stops when its supervisor is gone."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.parent = os.getpid()
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        _exit_with_parent(self.parent)
        super().target(sockets)


class Workers(Multiprocess):
    """uvicorn's supervisor, with worker ``i`` serving ``sockets[i]`` only."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.processes_num = len(sockets)

    def _start(self, idx: int) -> Process:
        process = _Worker(self.config, [self.sockets[idx]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._start(idx) for idx in range(self.processes_num)]

    def restart_all(self) -> None:
        """One worker after the other: the new one serves before the old one stops."""
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start(idx)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                if not self.should_exit.is_set():
                    log.error("new worker [%s] was not ready in time; restart stopped", new.pid)
                return
            old.terminate()
            old.join()
            self.processes[idx] = new

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: the number of workers is fixed at start (--workers)")

    def handle_ttou(self) -> None:
        log.warning("SIGTTOU ignored: the number of workers is fixed at start (--workers)")

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for idx, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung, or already gone
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # It failed before serving: every replacement would fail the same way.
                log.error("worker [%s] failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            log.warning("worker [%s] died; starting another on its socket", process.pid)
            self.processes[idx] = self._start(idx)
