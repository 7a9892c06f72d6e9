"""Draft checking in a process of its own, at a lower CPU priority than the chat.

Agents typing send many more drafts than anyone sends messages, and checking
a draft costs more than relaying a message. Checked in the server process,
drafts share its event loop with the chat and, when the machine is busy,
chat messages wait behind them. Here a child process (one per server
process) checks them at a lower priority, so the operating system runs the
chat first and the drafts with the CPU time that is left.

The server process keeps everything else: it reads the ``draft`` frames,
keeps only the newest per conversation while a batch is being checked, and
sends the ``coach`` frames. Until the child is ready, after it dies, or while
it runs other rules than the server process (during a reload), the server
process checks drafts itself, as before.

Between the two, over the child's stdin and stdout: a batch of drafts is one
line, ``[["lang", "text"], ...]``, answered by one line per draft in the same
order, ``<seconds> <flags as JSON>``. The line ``{"reload": true}`` asks for a
reload; the child answers it (and announces itself at start) with
``{"fingerprint": ...}`` or ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from coach import FLAG_LIST, Coach, CoachError

log = logging.getLogger("tactline.checker")

#: How much lower the child's CPU priority is (``nice``).
NICENESS = 10
#: Drafts sent to the child at once, at most.
MAX_BATCH = 64
#: A batch not answered in this long means the child is stuck: it is replaced. On a busy
#: machine the child, at its lower priority, may wait long for the CPU; that is not stuck.
BATCH_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0
RESTART_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
WAIT_FOR_RULES_S = 0.2
LINE_LIMIT = 1 << 24



class CheckerUnavailable(Exception):
    """The child cannot check now; the caller checks in its own process."""


class DraftChecker:
    """The server process's side: starts the child, hands it batches of drafts."""

    def __init__(
        self, rules_dir: Path, cache_dir: Path | None, wanted: Callable[[], str | None]
    ) -> None:
        self.rules_dir = rules_dir
        self.cache_dir = cache_dir
        #: The rules the server process runs (None until it has loaded them).
        self.wanted = wanted
        #: The rules the child runs; None while it is not ready.
        self.fingerprint: str | None = None
        #: Drafts the child checked, and children started, since this process started.
        self.checked = 0
        self.started = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one exchange with the child at a time
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._gone = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        self._asked: tuple[str, str] | None = None
        self._backoff = RESTART_BACKOFF_S

    def usable(self) -> bool:
        """Can the child check drafts now, with the rules the server process runs?"""
        wanted = self.wanted()
        return wanted is not None and wanted == self.fingerprint

    @property
    def active(self) -> bool:
        """Whether the child was asked for (with the first draft)."""
        return self._task is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def follow(self) -> None:
        """Have the child load the rules again when the server process's rules changed."""
        fingerprint = self.wanted()
        have = self.fingerprint
        if fingerprint is None or have is None or have == fingerprint:
            return
        if self._asked == (have, fingerprint) or self._reloading is not None:
            return  # asked already: the files may have changed again since
        self._asked = (have, fingerprint)
        self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            await self.reload()
        finally:
            self._reloading = None

    def start(self) -> None:
        """Start the child (once); drafts are checked in process until it is ready."""
        if self._task is None and not self._stopping:
            self._task = asyncio.get_running_loop().create_task(self._keep(), name="draft-checker")

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._task, self._reloading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._end()

    async def _keep(self) -> None:
        """Run the child, and start a new one whenever it ends."""
        # Once the server process has compiled the rules, the child loads them from the
        # compile cache in a second or two instead of compiling them again.
        while self.wanted() is None:
            await asyncio.sleep(WAIT_FOR_RULES_S)
        while True:
            try:
                await self._spawn()
                self._backoff = RESTART_BACKOFF_S
                await self._gone.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - drafts are checked here meanwhile
                log.warning("draft checker not running (%s); drafts are checked in process", exc)
                self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)
            await self._end()
            await asyncio.sleep(self._backoff)

    async def _spawn(self) -> None:
        self._gone.clear()
        args = [sys.executable, "-m", "server.checker", str(self.rules_dir)]
        if self.cache_dir is not None:
            args.append(str(self.cache_dir))
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            # Signals for the server's process group (Ctrl-C, a supervisor's stop) are
            # not for the child: it ends when the server process closes its stdin, or dies.
            start_new_session=True,
        )
        async with asyncio.timeout(START_TIMEOUT_S):
            answer = await self._read_status()
        self.fingerprint = answer
        self.started += 1
        log.info("draft checker %d ready (%s)", self._proc.pid, answer)

    async def _read_status(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = await self._proc.stdout.readline()
        if not line:
            raise EOFError("the draft checker ended")
        status = json.loads(line)
        if "error" in status:
            raise CheckerUnavailable(status["error"])
        return str(status["fingerprint"])

    async def _end(self) -> None:
        self.fingerprint = None
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

    def _lost(self, why: str) -> None:
        if not self._stopping:
            log.warning("draft checker lost (%s); starting another", why)
        self.fingerprint = None
        self._gone.set()

    async def reload(self) -> None:
        """Have the child load the rules again (after the server process did)."""
        if self._proc is None or self.fingerprint is None:
            return
        async with self._lock:
            kept, self.fingerprint = self.fingerprint, None  # until the child says which
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write(b'{"reload": true}\n')
                async with asyncio.timeout(START_TIMEOUT_S):
                    self.fingerprint = await self._read_status()
            except CheckerUnavailable as exc:
                log.warning("draft checker kept its rules: %s", exc)
                self.fingerprint = kept
            except (OSError, EOFError, TimeoutError, ValueError, KeyError) as exc:
                self._lost(repr(exc))

    async def check(self, drafts: Sequence[tuple[str, str]]) -> list[tuple[float, str]]:
        """Seconds spent and flags (as JSON) of each ``(lang, text)``, in order."""
        proc = self._proc
        if proc is None or self.fingerprint is None:
            raise CheckerUnavailable("not ready")
        assert proc.stdin is not None and proc.stdout is not None
        async with self._lock:
            # ASCII: a text the frame parser let through encodes, whatever it holds.
            request = json.dumps(drafts) + "\n"
            try:
                proc.stdin.write(request.encode())
                results: list[tuple[float, str]] = []
                async with asyncio.timeout(BATCH_TIMEOUT_S):
                    for _ in drafts:
                        line = await proc.stdout.readline()
                        if not line:
                            raise CheckerUnavailable("the draft checker ended")
                        seconds, flags = line.decode().rstrip("\n").split(" ", 1)
                        results.append((float(seconds), flags))
                self.checked += len(results)
            except (OSError, TimeoutError, ValueError, CheckerUnavailable) as exc:
                self._lost(repr(exc))
                raise CheckerUnavailable(repr(exc)) from None
            return results


# ---------------------------------------------------------------- the child


def _load(rules_dir: Path, cache_dir: Path | None) -> tuple[Coach | None, str]:
    """A coach and the status line that says so."""
    try:
        coach = Coach.load(rules_dir, cache_dir=cache_dir)
    except CoachError as exc:
        return None, json.dumps({"error": str(exc)})
    gc.collect()
    gc.freeze()  # the rules live as long as the process: keep them out of collections
    return coach, json.dumps({"fingerprint": coach.fingerprint})


def serve(rules_dir: Path, cache_dir: Path | None) -> None:
    """Answer drafts from stdin on stdout until stdin ends."""
    out = sys.stdout.buffer
    coach, status = _load(rules_dir, cache_dir)
    with contextlib.suppress(OSError):  # loaded first, at the server's priority
        os.nice(NICENESS)
    out.write(status.encode() + b"\n")
    out.flush()
    if coach is None:
        return
    for line in sys.stdin.buffer:
        request = json.loads(line)
        if isinstance(request, dict):  # {"reload": true}
            gc.unfreeze()
            fresh, status = _load(rules_dir, cache_dir)
            if fresh is not None:
                coach = fresh
            del fresh
            out.write(status.encode() + b"\n")
        else:
            for lang, text in request:
                started = time.perf_counter()
                try:
                    flags = coach.check(text, lang, "agent")
                except Exception:  # noqa: BLE001 - one bad draft must not end the checker
                    log.exception("draft check failed")
                    flags = []
                spent = time.perf_counter() - started
                out.write(b"%.6f %s\n" % (spent, FLAG_LIST.dump_json(flags)))
        out.flush()


def main() -> None:
    rules_dir = Path(sys.argv[1])
    cache_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s draft checker: %(message)s")
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        serve(rules_dir, cache_dir)


if __name__ == "__main__":
    main()
