"""Prometheus text exposition for this process; no client library needed."""

from __future__ import annotations

import bisect
from collections import defaultdict

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DRAFT_BUCKETS_S = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05)


class Histogram:
    """Counts by upper bound, in Prometheus' cumulative form when rendered."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds
        self.n += 1

    def render(self, name: str, help_text: str) -> list[str]:
        out = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            cumulative += n
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        cumulative += self.counts[-1]
        out.append(f'{name}_bucket{{le="+Inf"}} {cumulative}')
        out.append(f"{name}_sum {self.sum:.6f}")
        out.append(f"{name}_count {self.n}")
        return out


class Metrics:
    def __init__(self) -> None:
        self.connections: dict[str, int] = defaultdict(int)
        self.messages_total = 0
        self.frames_in_total = 0
        self.errors: dict[str, int] = defaultdict(int)
        self.closes: dict[int, int] = defaultdict(int)
        self.latency = Histogram(LATENCY_BUCKETS_S)
        self.draft_check = Histogram(DRAFT_BUCKETS_S)
        self.queue_length = 0

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    def render(self) -> str:
        out: list[str] = []
        out += [
            "# HELP tactline_connections Open WebSocket connections by role.",
            "# TYPE tactline_connections gauge",
        ]
        for role in ("visitor", "agent", "supervisor"):
            out.append(f'tactline_connections{{role="{role}"}} {self.connections[role]}')
        out += [
            "# HELP tactline_messages_total Chat messages stored by this process.",
            "# TYPE tactline_messages_total counter",
            f"tactline_messages_total {self.messages_total}",
            "# HELP tactline_frames_in_total Client frames received.",
            "# TYPE tactline_frames_in_total counter",
            f"tactline_frames_in_total {self.frames_in_total}",
            "# HELP tactline_errors_total Error frames sent, by code.",
            "# TYPE tactline_errors_total counter",
        ]
        for code, n in sorted(self.errors.items()):
            out.append(f'tactline_errors_total{{code="{code}"}} {n}')
        out += [
            "# HELP tactline_closes_total Connections closed by the server, by close code.",
            "# TYPE tactline_closes_total counter",
        ]
        for close_code, n in sorted(self.closes.items()):
            out.append(f'tactline_closes_total{{code="{close_code}"}} {n}')
        out += [
            "# HELP tactline_queue_length Conversations waiting for an agent.",
            "# TYPE tactline_queue_length gauge",
            f"tactline_queue_length {self.queue_length}",
        ]
        out += self.latency.render(
            "tactline_delivery_latency_seconds", "Event stored to sent to a client."
        )
        out += self.draft_check.render(
            "tactline_draft_check_seconds", "Time the coach took to check one draft."
        )
        return "\n".join(out) + "\n"
