"""TOTP second factor (django-otp) for supervisors and administrators who enrolled."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Role


def _login(username: str, password: str, token: str = "") -> bool:
    client = Client()
    client.post("/login/", {"username": username, "password": password, "otp_token": token})
    return "sessionid" in client.cookies


def test_an_enrolled_supervisor_needs_the_current_code(make_user):
    make_user(Role.SUPERVISOR, "jefa", password="clave-larga-2026")
    out = StringIO()
    call_command("totp_enroll", "jefa", stdout=out)
    assert out.getvalue().startswith("otpauth://totp/")
    device = TOTPDevice.objects.get(user__username="jefa")
    assert not _login("jefa", "clave-larga-2026")  # the password alone is not enough
    assert _login("jefa", "clave-larga-2026", f"{totp(device.bin_key):06d}")
    assert not _login("jefa", "clave-larga-2026", "000000")


def test_users_without_a_device_log_in_with_the_password(make_user):
    make_user(Role.DISPATCHER, "despacho", password="clave-larga-2026")
    assert _login("despacho", "clave-larga-2026")


def test_the_admin_login_asks_for_it_too(make_user):
    make_user(Role.ADMINISTRATOR, "raiz", password="clave-larga-2026", is_staff=True, is_superuser=True)
    call_command("totp_enroll", "raiz", stdout=StringIO())
    client = Client()
    client.post("/admin/login/", {"username": "raiz", "password": "clave-larga-2026"})
    assert "sessionid" not in client.cookies


def test_only_supervisors_and_administrators_enrol(make_user):
    make_user(Role.CALL_TAKER, "operador")
    with pytest.raises(CommandError):
        call_command("totp_enroll", "operador", stdout=StringIO())
