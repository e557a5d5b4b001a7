"""The interstate feature in the interface's language (Spanish first): a delivery that got no HTTP answer is
stored as a dispatcher reads it, in the centre's language ("CDMX no respondió a tiempo (30 s)", not
"CDMX: ReadTimeout: timed out"); the supervisor's audit shows its result codes and the protocol's answers
as labels, the code kept beside them; a schema refusal counts its errors in the singular or plural."""

import errno
import socket

import httpx
import pytest
from django.utils import translation
from rest_framework.test import APIClient

from interstate import delivery, services
from interstate.models import Escalation, Peer, PeerRequestLog
from tests.factories import open_incident
from tests.interstate_support import INSIDE_CDMX, cdmx_incident, message, post_message, register_cdmx

pytestmark = pytest.mark.django_db


@pytest.fixture
def cdmx(center):
    return register_cdmx()


def _share(center, dispatcher, accident_type) -> Escalation:
    incident = open_incident(
        center=center, by=dispatcher, incident_type=accident_type, lat=INSIDE_CDMX[0], lon=INSIDE_CDMX[1]
    )
    return services.escalate_incident(
        folio=incident.folio, center_id=center.id, peer_code="CDMX", kind="request_for_service", by=dispatcher
    )


def _fail_with(monkeypatch, error: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    monkeypatch.setattr(delivery, "_http_client", httpx.Client(transport=httpx.MockTransport(handler)))


def _refused() -> httpx.ConnectError:
    try:
        raise httpx.ConnectError("All connection attempts failed") from ConnectionRefusedError(
            errno.ECONNREFUSED, "Connection refused"
        )
    except httpx.ConnectError as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (httpx.ReadTimeout("timed out"), "CDMX no respondió a tiempo (30 s)"),
        (httpx.ConnectTimeout("timed out"), "CDMX no respondió a tiempo (30 s)"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "CDMX no acepta conexiones (¿caído?)"),
        (_refused(), "CDMX no acepta conexiones (¿caído?)"),  # by the socket's error, whatever httpx's text
        (
            httpx.ConnectError("[Errno -2] Name or service not known"),
            "no se pudo conectar con CDMX: [Errno -2] Name or service not known",
        ),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            "se cortó la comunicación con CDMX: Server disconnected without sending a response.",
        ),
        (httpx.ConnectError("x" * 500), "no se pudo conectar con CDMX: " + "x" * 119 + "…"),
    ],
    ids=["read-timeout", "connect-timeout", "refused", "refused-by-cause", "dns", "cut", "long-detail"],
)
def test_a_delivery_without_an_answer_is_said_in_spanish_for_the_dispatcher(
    cdmx, center, dispatcher, accident_type, monkeypatch, settings, error, said
):
    """It read "CDMX: ReadTimeout: timed out" and "CDMX: ConnectError: [Errno 111] Connection refused" on the
    console ("Último error (intento 2): …") and the supervisor's page."""
    settings.CAD_INTERSTATE_HTTP_TIMEOUT_S = 30.0
    escalation = _share(center, dispatcher, accident_type)
    _fail_with(monkeypatch, error)
    with pytest.raises(delivery.PeerUnavailable):
        delivery.drain_escalation(escalation_id=escalation.id)
    escalation.refresh_from_db()
    assert escalation.last_error == said
    assert escalation.outbox.get().last_error == said
    audit = PeerRequestLog.objects.get(direction="outbound")
    assert (audit.result, audit.detail) == ("network_error", f"{said} [{type(error).__name__}]")


def test_the_stored_error_is_in_the_centres_language_whoever_ran_the_drain(
    cdmx, center, dispatcher, accident_type, monkeypatch, settings
):
    """A drain may run in a request's thread (an English-speaking supervisor's retry): what is stored is the
    centre's language, as the worker (which activates none) writes it."""
    escalation = _share(center, dispatcher, accident_type)
    _fail_with(monkeypatch, httpx.ConnectError("[Errno 111] Connection refused"))
    with translation.override("en"), pytest.raises(delivery.PeerUnavailable):
        delivery.drain_escalation(escalation_id=escalation.id)
    escalation.refresh_from_db()
    assert escalation.last_error == "CDMX no acepta conexiones (¿caído?)"
    settings.LANGUAGE_CODE = "en"  # a centre working in English
    assert (
        delivery.transport_error("CDMX", httpx.ConnectError("refused")) == "CDMX refuses connections (down?)"
    )


def test_real_sockets_refused_and_silent(cdmx, center, dispatcher, accident_type, monkeypatch, settings):
    """httpx's own exceptions, from real sockets: a port nobody listens on, and one that never answers."""
    settings.CAD_INTERSTATE_HTTP_TIMEOUT_S = 0.3
    monkeypatch.setattr(delivery, "_http_client", None)  # a real client, with the setting's timeout
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        for port, said in (
            (closed_port, "CDMX no acepta conexiones (¿caído?)"),
            (silent.getsockname()[1], "CDMX no respondió a tiempo (0.3 s)"),
        ):
            escalation = _share(center, dispatcher, accident_type)
            Peer.objects.filter(code="CDMX").update(
                base_url=f"http://127.0.0.1:{port}", probe_after=None, failures=0
            )
            with pytest.raises(delivery.PeerUnavailable):
                delivery.drain_escalation(escalation_id=escalation.id)
            escalation.refresh_from_db()
            assert escalation.last_error == said
    finally:
        silent.close()
        if delivery._http_client is not None:
            delivery._http_client.close()


def _audit(**fields) -> PeerRequestLog:
    return PeerRequestLog.objects.create(
        peer_code="CDMX", direction="outbound", method="POST", path="/api/v1/interstate/messages", **fields
    )


def test_the_supervisors_audit_shows_labels_with_the_code_kept(cdmx, supervisor, client):
    """Its "Resultado" and "Detalle" columns showed `network_error`, `ok`, `applied`, `response recorded`,
    `queued for a dispatcher`: labels now, the code beside (support staff, the filter), unknown ones as they
    are."""
    rows = {
        "network": _audit(action="update", result="network_error", detail="CDMX no respondió a tiempo (5 s)"),
        "queued": _audit(
            action="requestForService",
            status_code=202,
            result="ok",
            detail="queued for a dispatcher · CDMX-7",
        ),
        "applied": _audit(action="update", status_code=200, result="ok", detail="applied"),
        "response": _audit(action="response", status_code=200, result="ok", detail="rejection recorded"),
        "unknown": _audit(action="update", status_code=418, result="teapot_code", detail="something new"),
    }
    client.force_login(supervisor)
    html = client.get("/dashboard/interstate/").content.decode()

    def row(name):
        start = html.index(f'data-audit="{rows[name].id}"')
        return html[start : html.index("</tr>", start)]

    assert 'Sin respuesta (red) <span class="raw-code mono">network_error</span>' in row("network")
    assert ">CDMX no respondió a tiempo (5 s)</td>" in row("network")
    assert 'Procesada <span class="raw-code mono">ok</span>' in row("queued")
    assert 'title="queued for a dispatcher · CDMX-7">En espera de un despachador · CDMX-7</td>' in row(
        "queued"
    )
    assert 'title="applied">Aplicada</td>' in row("applied")
    assert 'title="rejection recorded">Rechazo registrado</td>' in row("response")
    assert "<td>teapot_code</td>" in row("unknown") and "<td>something new</td>" in row("unknown")
    client.cookies["cad_language"] = "en"
    english = client.get("/dashboard/interstate/").content.decode()
    assert (
        'Processed <span class="raw-code mono">ok</span>' in english and ">Rejection recorded</td>" in english
    )


@pytest.mark.parametrize(
    ("errors", "said"),
    [
        (1, "El mensaje no cumple el esquema NENA (1 error)."),
        (2, "El mensaje no cumple el esquema NENA (2 errores)."),
    ],
)
def test_a_schema_refusal_counts_its_errors_in_the_singular_or_plural(cdmx, accident_type, errors, said):
    """It read "(1 errores)"."""
    peer, secret = cdmx
    remote, _user = cdmx_incident(accident_type)
    bad = message("requestForService", "urn:uuid:bad", source=remote)
    bad["eido"]["incidentComponent"]["incidentTypeCommonRegistryText"] = 7
    if errors == 2:
        del bad["eido"]["agencyComponent"]
    response = post_message(APIClient(), peer, secret, bad)
    assert response.status_code == 400
    body = response.json()
    assert (body["code"], len(body["fields"]["schema"]), body["message"]) == ("invalid_message", errors, said)
    assert PeerRequestLog.objects.order_by("-id").first().detail == said
