"""Process-wide counters of the console websocket, exposed at GET /api/v1/realtime/metrics (per process),
with the broadcaster's counters of the same process (cad.events.broadcaster)."""

from cad.events import broadcaster

METRICS = {
    "connections_open": 0,
    "connections_total": 0,
    "connections_refused": 0,
    "replays": 0,
    "replayed_events": 0,
    "resumes": 0,
    "resyncs": 0,
    "duplicates_dropped": 0,
    "gaps_filled": 0,
    "avl_flushes": 0,
    "heartbeats": 0,
    "hub_receive_errors": 0,
    "hub_rejoins": 0,
    "sessions_ended": 0,
    "frames_rejected": 0,
    "frames_failed": 0,
}


def metrics_snapshot() -> dict:
    return {**METRICS, **broadcaster.metrics}
