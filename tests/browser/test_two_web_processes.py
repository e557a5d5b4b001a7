"""Beyond one host: two web processes on different ports share only PostgreSQL and Redis (as several Daphne
hosts behind a load balancer do). A console on one sees, live, what a dispatcher writes through the other,
and a session made on one is valid on the other (sessions live in the database)."""

import asyncio
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import websockets

from tests.browser.conftest import daphne_server

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="two web processes share state only on the production path (PostgreSQL + Redis)",
)


@pytest.fixture(scope="module")
def second_server(cad_server_env):
    with daphne_server(cad_server_env) as base:
        yield base


async def _console_sees(base: str, session: str, marker: str, write) -> dict:
    async with websockets.connect(
        base.replace("http://", "ws://") + "/ws/console/",
        additional_headers={"Cookie": f"sessionid={session}", "Origin": base},
        open_timeout=15,
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "streams": {"console": None}}))
        async with asyncio.timeout(20):
            while json.loads(await ws.recv()).get("type") != "hello":
                pass
            await asyncio.to_thread(write)
            while True:
                message = json.loads(await ws.recv())
                if message.get("type") == "incident.created" and message["payload"].get("address") == marker:
                    return message


def test_a_console_on_one_process_sees_writes_made_through_another(cad_server, second_server, api_session):
    writer = api_session("despachador")  # logged in on the first process
    assert writer.base_url != second_server
    marker = f"Dos procesos {uuid.uuid4().hex[:8]}"

    def write():
        response = writer.post(
            "/api/v1/calls/",
            json={
                "line": "911",
                "disposition": "new_incident",
                "incident_type_code": "10104",
                "lat": 19.29,
                "lon": -99.65,
                "address": marker,
            },
        )
        assert response.status_code == 201, response.text[:300]

    # The session made on the first process opens a console on the second one.
    # Its own thread: the browser tests' Playwright keeps an event loop running in this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        event = thread.submit(
            asyncio.run, _console_sees(second_server, writer.cookies["sessionid"], marker, write)
        ).result()
    assert event["stream"] == "console" and event["payload"]["folio"].startswith("MEX-")
