import os

from django.urls import path

from console.consumers import BareForwardConsumer, ConsoleConsumer

websocket_urlpatterns: list = [
    path("ws/console/", ConsoleConsumer.as_asgi()),
]

if os.environ.get("CAD_BENCH_BASELINE") == "1":
    # Benchmark baseline (bench/console_latency.py): a bare forwarder with no auth. Never enabled otherwise.
    websocket_urlpatterns.append(path("ws/bench-baseline/<int:center_id>/", BareForwardConsumer.as_asgi()))
