"""Server processes build the EIDO/STA-024 validators in the background at start when the centre has an
enabled peer (cad.warmup, called by cad.asgi and each Celery worker child), never when it has none."""

import pytest

from cad import warmup
from interstate import validation
from tests.interstate_support import register_cdmx

pytestmark = pytest.mark.django_db(transaction=True)  # the warm-up thread reads with its own connection


@pytest.fixture
def cold_validators():
    validation._eido_validator.cache_clear()
    validation._message_validators.cache_clear()
    yield
    validation._eido_validator.cache_clear()
    validation._message_validators.cache_clear()


def test_no_peer_no_schema_loaded(center, cold_validators):
    warmup.start().join(timeout=60)
    assert validation._eido_validator.cache_info().currsize == 0


def test_an_enabled_peer_gets_the_validators_built_at_start(center, cold_validators):
    register_cdmx()
    warmup.start().join(timeout=120)
    assert validation._eido_validator.cache_info().currsize == 1
    assert validation._message_validators.cache_info().currsize == 1
