"""Helpers for the interstate tests: a registered peer (CDMX), its area, signed requests as that peer, and
EIDOs built by the product's own builder from an incident of the peer's centre."""

import json
import uuid

from incidents import services as incident_services
from incidents.models import CallDisposition, Line
from interstate import eido, services, signing
from interstate.models import Escalation
from tests.factories import CenterFactory, UserFactory

# A box around Mexico City (lon/lat), close enough to CDMX for detection tests.
CDMX_AREA = {
    "type": "Polygon",
    "coordinates": [[[-99.36, 19.05], [-98.94, 19.05], [-98.94, 19.59], [-99.36, 19.59], [-99.36, 19.05]]],
}
INSIDE_CDMX = (19.4326, -99.1332)  # Zócalo
NEAR_CDMX = (19.62, -99.15)  # ~3.3 km north of the box
FAR_FROM_CDMX = (19.29, -99.66)  # Toluca


def register_cdmx(**overrides):
    """Peer CDMX registered at MEX (the home centre must exist). Returns (peer, inbound secret)."""
    fields = {
        "code": "CDMX",
        "name": "C5 Ciudad de México",
        "base_url": "http://cdmx.invalid",
        "service_area": CDMX_AREA,
        "outbound_key_id": "mex-at-cdmx",
        "outbound_secret": "secret-mex-uses-to-sign-for-cdmx",
        **overrides,
    }
    return services.peer_register(**fields)


def signed(peer, secret: str, method: str, path: str, body: bytes = b"", **override) -> dict:
    """Django test-client headers (HTTP_…) for a request signed as `peer` with `secret`."""
    headers = signing.sign(key_id=peer.inbound_key_id, secret=secret, method=method, path=path, body=body)
    headers.update(override)
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


def post_message(client, peer, secret: str, message: dict, *, key: str | None = None, **override):
    body = json.dumps(message).encode()
    path = "/api/v1/interstate/messages"
    headers = signed(peer, secret, "POST", path, body, **override)
    headers["HTTP_IDEMPOTENCY_KEY"] = key or str(uuid.uuid4())
    return client.post(path, data=body, content_type="application/json", **headers)


def cdmx_incident(incident_type, *, lat=INSIDE_CDMX[0], lon=INSIDE_CDMX[1], line=Line.EMERGENCY, **call):
    """An incident of the CDMX centre (as the peer's own CAD would hold it)."""
    center = CenterFactory(code="CDMX", name="C5 CDMX", cve_ent="09")
    user = UserFactory(username="cdmx-dispatcher", center=center)
    return incident_services.take_call(
        center=center,
        by=user,
        line=line,
        disposition=CallDisposition.NEW_INCIDENT,
        incident_type=incident_type,
        lat=lat,
        lon=lon,
        **call,
    ).incident, user


def message(kind: str, request_id: str, *, source=None, sequence=None, **extra) -> dict:
    """A STA-024 message as the peer sends it (the product's own envelope, and the EIDO of the peer's
    incident `source` built by the product's builder)."""
    document = eido.build_eido(source, peer_code="MEX", peer_role="Responding") if source else None
    return services.message_body(
        Escalation(request_id=request_id),
        kind,
        key=uuid.uuid4(),
        eido_document=document,
        sequence=sequence,
        **extra,
    )
