"""Test settings: the project's, with a secret key. Servers refuse the public built-in key when DEBUG is off
(cad.checks); the key set here is inherited by the servers the tests start (Daphne, cad.serve, Celery)."""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-not-a-secret-" + "k" * 40)

from cad.settings import *  # noqa: E402, F403

# Tests log users in with force_login / authenticate() without a request; the throttling test turns it on.
AXES_ENABLED = False
