import faulthandler
import os
import sys
import threading
import time

import pytest
from rest_framework.test import APIClient

from accounts.models import Role
from cad.settings import redis_channel_layer
from tests.factories import CenterFactory, IncidentTypeFactory, SubtypeResponsePlanFactory, UserFactory

EXIT_GRACE_S = 60
_exit_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After the summary, the interpreter joins every non-daemon thread before it exits. A test that left one
    that never ends (an event loop stuck closing a task, say) would hold the run until CI's own timeout, with
    every result already printed. Give the normal exit EXIT_GRACE_S, then print every thread's stack and
    end the process with pytest's own exit status."""

    def end_a_stuck_exit():
        time.sleep(EXIT_GRACE_S)
        stuck = [t.name for t in threading.enumerate() if not t.daemon and t is not threading.main_thread()]
        print(
            f"\npytest did not exit {EXIT_GRACE_S} s after its summary; threads still running: {stuck}",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os._exit(_exit_status["code"])

    threading.Thread(target=end_a_stuck_exit, name="exit-watchdog", daemon=True).start()


@pytest.fixture(autouse=True)
def _fresh_jurisdiction_cache():
    """Tests roll back the boundaries the locator cached: start and end each test with an empty cache."""
    from geo.locator import invalidate

    invalidate()
    yield
    invalidate()


@pytest.fixture
def center(db):
    return CenterFactory()


@pytest.fixture
def make_user(center):
    def make(role: str, username: str | None = None, **kwargs):
        return UserFactory(
            username=username or role, role=role, center=kwargs.pop("center", center), **kwargs
        )

    return make


@pytest.fixture
def call_taker(make_user):
    return make_user(Role.CALL_TAKER)


@pytest.fixture
def dispatcher(make_user):
    return make_user(Role.DISPATCHER)


@pytest.fixture
def supervisor(make_user):
    return make_user(Role.SUPERVISOR)


@pytest.fixture
def api_client_for():
    """An APIClient authenticated as the given user (session-free: force_authenticate)."""

    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user=user)
        return client

    return make


@pytest.fixture
def accident_type(db):
    SubtypeResponsePlanFactory(subtipo_code="101", plan={"ambulance": 1, "patrol": 1})
    return IncidentTypeFactory(code="10104")


REDIS_URL = os.environ.get("REDIS_URL") or os.environ.get("CAD_TEST_REDIS_URL", "")


@pytest.fixture(params=["memory", "redis"])
def layer_backend(request, settings):
    """Run each test on the in-memory layer and, when a Redis URL is configured, on channels_redis."""
    if request.param == "memory":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    else:
        if not REDIS_URL:
            pytest.skip("no REDIS_URL / CAD_TEST_REDIS_URL: Redis channel layer not tested")
        settings.CHANNEL_LAYERS = {"default": redis_channel_layer(REDIS_URL)}
    return request.param


def _require_postgres_and_redis(what: str) -> None:
    """Skip (or, under CI=true, fail) a test that needs PostgreSQL and Redis when they are not configured."""
    missing = [
        name
        for name, ok in (
            ("DATABASE_URL (PostgreSQL)", os.environ.get("DATABASE_URL", "").startswith("postgres")),
            ("REDIS_URL", bool(os.environ.get("REDIS_URL"))),
        )
        if not ok
    ]
    if missing:
        message = f"{what} needs {', '.join(missing)}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def two_centres_session(tmp_path_factory):
    """MEX and CDMX running for the whole session (tests/interstate_harness.py); use `two_centres`."""
    _require_postgres_and_redis("the two-instance interstate harness")
    from tests.interstate_harness import TwoCentres

    pair = TwoCentres(os.environ["DATABASE_URL"], os.environ["REDIS_URL"], tmp_path_factory.mktemp("centres"))
    try:
        pair.setup()
        yield pair
    finally:
        pair.teardown()


@pytest.fixture
def two_centres(two_centres_session):
    """The shared MEX + CDMX pair, with every process running (restarted if a previous test left it down)."""
    two_centres_session.heal()
    return two_centres_session
