"""HTTP through the ASGI application (cad.asgi): the middleware chain and the view run on one worker thread
(cad.handlers.SyncChainASGIHandler), so a request crosses threads three times instead of about ten, with
every middleware still applied."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from asgiref.sync import AsyncToSync, SyncToAsync
from django.core.handlers.asgi import ASGIHandler

from accounts.tokens import issue_token
from cad.asgi import application
from cad.handlers import SyncChainASGIHandler
from tests.factories import IncidentTypeFactory, SubtypeResponsePlanFactory, UnitFactory, open_incident


@pytest.fixture
def hops(monkeypatch):
    """Every switch of a request between the event loop and a worker thread, by kind."""
    counted = {"sync_to_async": 0, "async_to_sync": 0}
    to_thread, to_loop = SyncToAsync.__call__, AsyncToSync.__call__

    async def counting_to_thread(self, *args, **kwargs):
        counted["sync_to_async"] += 1
        return await to_thread(self, *args, **kwargs)

    def counting_to_loop(self, *args, **kwargs):
        counted["async_to_sync"] += 1
        return to_loop(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting_to_thread)
    monkeypatch.setattr(AsyncToSync, "__call__", counting_to_loop)
    return counted


def get(app, path: str, **headers) -> httpx.Response:
    async def call():
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.get(path, headers=headers)

    # A loop of its own in a fresh thread: a browser test may leave one running in this thread, and
    # async_to_sync would count as a hop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call()).result()


def test_the_http_application_is_the_sync_chain_handler():
    assert isinstance(application.application.application_mapping["http"], SyncChainASGIHandler)


@pytest.mark.django_db  # request_started checks the request thread's connection (SQLite keeps it open)
def test_a_page_crosses_threads_three_times_with_every_middleware_applied(hops):
    response = get(application, "/login/")
    assert response.status_code == 200
    assert hops == {"sync_to_async": 3, "async_to_sync": 0}  # request_started, chain + view, close
    # Security, sessions/CSRF, locale, clickjacking middleware all ran on the way out.
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-language"] == "es-mx"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "csrftoken" in response.cookies
    assert "Cookie" in response.headers["vary"]


@pytest.mark.django_db
def test_django_handler_would_cross_threads_about_ten_times(hops):
    """What the handler saves: Django's own, on the same middleware, switches threads for each
    MiddlewareMixin hook and back for our sync-only middleware."""
    response = get(ASGIHandler(), "/login/")
    assert response.status_code == 200
    assert hops["sync_to_async"] + hops["async_to_sync"] >= 8


@pytest.mark.django_db(transaction=True)  # the request runs on another thread, with its own connection
def test_token_recommendations_through_the_asgi_application(dispatcher, hops):
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1})
    unit = UnitFactory(center=dispatcher.center, lat=19.31, lon=-99.6, capabilities=["ambulance"])
    incident = open_incident(
        center=dispatcher.center, by=dispatcher, incident_type=IncidentTypeFactory(code="10104")
    )
    token = issue_token(dispatcher)
    hops.update(
        sync_to_async=0, async_to_sync=0
    )  # the set-up's broadcasts (in-memory layer) are not the request's
    response = get(
        application, f"/api/v1/incidents/{incident.folio}/recommendations", authorization=f"Token {token}"
    )
    assert response.status_code == 200, response.text
    assert response.json()["suggested_unit_ids"] == [unit.id]
    assert hops == {"sync_to_async": 3, "async_to_sync": 0}
    assert get(application, f"/api/v1/incidents/{incident.folio}/recommendations").status_code == 401


def test_requests_reuse_their_thread_one_request_at_a_time(monkeypatch):
    """Django starts and joins a thread per request; this handler hands each request an idle one of its
    own threads, and requests in flight together never share one."""
    import threading
    import time

    handler = SyncChainASGIHandler()
    seen: list[tuple[str, threading.Thread]] = []
    get_response = handler.get_response

    def recording(request):
        seen.append((request.path, threading.current_thread()))  # the objects: no reused idents
        if request.path == "/login/":
            time.sleep(0.2)  # still in flight when the other request arrives
        return get_response(request)

    monkeypatch.setattr(handler, "get_response", recording)

    async def both_then_one():
        transport = httpx.ASGITransport(app=handler, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            first = asyncio.create_task(client.get("/login/"))
            await asyncio.sleep(0.05)
            await client.get("/favicon.ico")
            await first
            await client.get("/favicon.ico")

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, both_then_one()).result()
    (_, slow), (_, during), (_, after) = seen
    assert slow is not during  # in flight together: two threads
    assert after is slow or after is during  # then an idle one is reused, not a new thread
    assert all(thread.name.startswith("request") for thread in (slow, during))
