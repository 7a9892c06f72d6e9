"""The coach at run time: loaded in the background, reloaded when rules change.

Compiling runs in a thread; the new :class:`coach.Coach` replaces the old one
in a single assignment, so a check in progress finishes with the rules it
started with. A rule file with an error leaves the running rules in place;
the error (file, line, rule) goes to the log and to ``/readyz``.

Every process watches the rules directory itself (every couple of seconds);
a reload asked for through the API happens at once in the process that
answers it, and the others follow at their next look at the directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from coach import Coach, CoachError

log = logging.getLogger("tactline.rules")

RELOAD_CHANNEL = "{tl}:rules-reload"
#: How often the rules directory is looked at for changes.
POLL_INTERVAL_S = 2.0


def rules_fingerprint(rules_dir: Path) -> str:
    """Names, sizes and modification times of the rule files."""
    digest = hashlib.sha256()
    for path in sorted(rules_dir.glob("*/*.yaml")):
        with contextlib.suppress(OSError):
            st = path.stat()
            digest.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def settle_heap() -> None:
    """Keep the coach's tables out of the garbage collector's full passes.

    A loaded coach is some 150,000 long-lived objects; every full collection
    walked them all, stalling the event loop for about 100 ms (seen as chat
    latency spikes). Freezing them after a load makes those passes cheap; the
    previous coach, if any, is collected first so that a reload leaks nothing.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class RulesRuntime:
    """Holds the current coach; ``coach`` is None until the first load succeeds."""

    def __init__(self, rules_dir: Path, cache_dir: Path | None = None) -> None:
        self.rules_dir = rules_dir
        self.cache_dir = cache_dir
        self.coach: Coach | None = None
        self.error: str | None = None
        self.loaded_at: float | None = None
        self.reloads = 0
        self._seen = ""
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.coach is not None

    def status(self) -> dict[str, Any]:
        return {
            "loaded": self.coach is not None,
            "rules": len(self.coach.rules) if self.coach else 0,
            "fingerprint": self.coach.fingerprint if self.coach else None,
            "error": self.error,
            "reloads": self.reloads,
        }

    def _compile(self) -> Coach:
        return Coach.load(self.rules_dir, cache_dir=self.cache_dir)

    async def reload(self) -> bool:
        """Compile the rules now; True when the new rules are in use."""
        async with self._lock:
            self._seen = rules_fingerprint(self.rules_dir)
            started = time.perf_counter()
            try:
                coach = await asyncio.to_thread(self._compile)
            except CoachError as exc:
                self.error = str(exc)
                log.error("rules not reloaded, the running rules stay: %s", exc)
                return False
            except Exception as exc:  # noqa: BLE001 - whatever breaks, the chat goes on
                self.error = f"{type(exc).__name__}: {exc}"
                log.exception("rules not reloaded, the running rules stay")
                return False
            if self.coach is not None and coach.fingerprint == self.coach.fingerprint:
                self.error = None
                return True
            self.coach = coach
            del coach
            self.error = None
            self.loaded_at = time.time()
            self.reloads += 1
            settle_heap()
            log.info(
                "rules loaded: %d rules in %.2f s (%s)",
                len(self.coach.rules),
                time.perf_counter() - started,
                self.coach.fingerprint,
            )
            return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="rules-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        await self.reload()
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            if rules_fingerprint(self.rules_dir) != self._seen:
                await self.reload()
