"""Rules at run time: what a load leaves in memory."""

from __future__ import annotations

import gc
import shutil
import weakref
from pathlib import Path

from server.rules_runtime import RulesRuntime

RULES = Path(__file__).resolve().parents[2] / "rules"


async def test_a_loaded_coach_is_kept_out_of_full_collections_and_a_reload_leaks_nothing(
    tmp_path: Path,
) -> None:
    rules_dir = tmp_path / "rules"
    shutil.copytree(RULES, rules_dir)
    runtime = RulesRuntime(rules_dir, cache_dir=tmp_path / "cache")
    try:
        assert await runtime.reload()
        first = runtime.coach
        assert first is not None
        # The coach's tables are frozen: a full collection no longer walks them.
        assert gc.get_freeze_count() > 50_000
        old = weakref.ref(first)
        del first
        # A rule edited: the new coach replaces the old, which is freed despite the freeze.
        path = rules_dir / "en" / "frustration.yaml"
        path.write_text(path.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
        assert await runtime.reload()
        assert runtime.coach is not None and old() is None
    finally:
        gc.unfreeze()
