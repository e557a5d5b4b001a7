"""Interstate escalation: peers (other command centres' CADs), escalations of incidents between them, vehicle
alerts shared with them, the transactional outbox (ordered per-peer streams) that delivers messages, the inbound
dedupe and replay tables and the audit of every peer request.

See docs/interstate.md for the wire protocol these rows implement.
"""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from interstate import secrets


def default_border_km() -> float:
    return settings.CAD_INTERSTATE_BORDER_KM


class Peer(models.Model):
    """Another command centre whose CAD speaks this interface (a neighbouring state or a municipal C4).

    HMAC needs the plaintext secret on both sides, so secrets are stored encrypted (interstate.secrets) and
    never shown back: `outbound_*` signs our requests to the peer, `inbound_*` verifies the peer's to us."""

    class Kind(models.TextChoices):
        STATE = "state", _("Estatal")
        MUNICIPAL = "municipal", _("Municipal")

    code = models.CharField(
        _("código"),
        max_length=16,
        unique=True,
        help_text=_("Clave del centro, p. ej. CDMX"),
        # It names the peer's account and key ids, and appears in folios and console tags.
        validators=[RegexValidator(r"^[A-Z0-9_-]{2,16}$", _("De 2 a 16 letras mayúsculas, dígitos, - o _."))],
    )
    kind = models.CharField(_("tipo"), max_length=16, choices=Kind.choices, default=Kind.STATE)
    name = models.CharField(_("nombre"), max_length=160)
    base_url = models.URLField(_("URL base"), help_text=_("p. ej. https://cad.c5.cdmx.gob.mx"))
    contact_desk = models.CharField(_("mesa de contacto"), max_length=300, blank=True)
    enabled = models.BooleanField(_("habilitado"), default=True)
    service_area = models.JSONField(_("área de servicio (GeoJSON)"), null=True, blank=True)
    min_lat = models.FloatField(null=True, blank=True)
    min_lon = models.FloatField(null=True, blank=True)
    max_lat = models.FloatField(null=True, blank=True)
    max_lon = models.FloatField(null=True, blank=True)
    border_km = models.FloatField(
        _("distancia a la frontera (km)"),
        default=default_border_km,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text=_("Se marcan los incidentes a esta distancia o menos del área del centro."),
    )
    outbound_key_id = models.CharField(_("clave de envío"), max_length=64, blank=True)
    outbound_secret_encrypted = models.TextField(blank=True, editable=False)
    inbound_key_id = models.CharField(_("clave de recepción"), max_length=64, unique=True)
    inbound_secret_encrypted = models.TextField(editable=False)
    service_user = models.OneToOneField(
        "accounts.User", on_delete=models.PROTECT, related_name="interstate_peer", editable=False
    )
    refreshed_at = models.DateTimeField(_("documento del par leído"), null=True, blank=True)
    # Circuit breaker (interstate.delivery): while the peer is unreachable, one probe per backoff interval.
    unavailable_since = models.DateTimeField(
        _("no toma nuestros mensajes desde"), null=True, blank=True, editable=False
    )
    probe_after = models.DateTimeField(null=True, blank=True, editable=False)
    failures = models.PositiveIntegerField(default=0, editable=False)
    # Last applied `sequence` of the peer's vehicle alerts (its stream "vehicles").
    vehicle_in_seq = models.PositiveBigIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("centro par")
        verbose_name_plural = _("centros pares")
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} — {self.name}"

    @property
    def has_outbound_credential(self) -> bool:
        """We hold the key id and secret the peer issued us: nothing goes to it unsigned."""
        return bool(self.outbound_key_id and self.outbound_secret_encrypted)

    @property
    def can_send(self) -> bool:
        return self.enabled and self.has_outbound_credential

    @property
    def outbound_secret(self) -> str:
        return secrets.decrypt(self.outbound_secret_encrypted) if self.outbound_secret_encrypted else ""

    @outbound_secret.setter
    def outbound_secret(self, value: str) -> None:
        self.outbound_secret_encrypted = secrets.encrypt(value) if value else ""

    @property
    def inbound_secret(self) -> str:
        return secrets.decrypt(self.inbound_secret_encrypted)

    @inbound_secret.setter
    def inbound_secret(self, value: str) -> None:
        self.inbound_secret_encrypted = secrets.encrypt(value)


class AutoEscalationPolicy(models.Model):
    """Escalate automatically the incidents of a CNIE type that detection flags for a peer."""

    class Kind(models.TextChoices):
        REQUEST_FOR_SERVICE = "request_for_service", _("Solicitud de servicio")
        REQUEST_AWARENESS = "request_awareness", _("Aviso")

    peer = models.ForeignKey(
        Peer,
        verbose_name=_("centro par"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="policies",
        help_text=_("Vacío: cualquier centro par que la detección marque."),
    )
    type_prefix = models.CharField(
        _("clave CNIE"),
        max_length=5,
        help_text=_("Tipo (1 dígito), subtipo (3) o clave (5)."),
        # Only these lengths are compared (type, subtype, code): any other could never match.
        validators=[RegexValidator(r"^\d(\d\d(\d\d)?)?$", _("Escriba 1, 3 o 5 dígitos de la clave CNIE."))],
    )
    kind = models.CharField(_("tipo de escalamiento"), max_length=24, choices=Kind.choices)
    enabled = models.BooleanField(_("habilitada"), default=True)

    class Meta:
        verbose_name = _("política de escalamiento automático")
        verbose_name_plural = _("políticas de escalamiento automático")

    def __str__(self) -> str:
        return f"{self.type_prefix} → {self.peer.code if self.peer_id else '*'} ({self.kind})"


EscalationKind = AutoEscalationPolicy.Kind


def new_request_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


class OutboxStream(models.Model):
    """An ordered stream of messages to one peer, drained in id order under a lease (interstate.delivery): one
    per escalation (`escalation:<id>`) and one per peer for vehicle alerts and sightings (`vehicles`)."""

    VEHICLES = "vehicles"

    peer = models.ForeignKey(Peer, on_delete=models.PROTECT, related_name="streams")
    key = models.CharField(max_length=64)
    # Sequence of the stream's sequenced messages (vehicle alerts; escalation updates count on the escalation).
    out_seq = models.PositiveBigIntegerField(default=0)
    # Delivery lease: who drains this stream now, until when.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name = _("flujo de mensajes salientes")
        verbose_name_plural = _("flujos de mensajes salientes")
        constraints = [models.UniqueConstraint(fields=["peer", "key"], name="uniq_outbox_stream_per_peer")]

    def __str__(self) -> str:
        return f"{self.peer_id}:{self.key}"


class Escalation(models.Model):
    """One local incident shared with one peer. Outbound: we shared our incident; inbound: the peer shared
    theirs and `incident` is our linked copy. `request_id` is the sender's stable id of the share (the
    STA-024 requestId), the same on both sides."""

    class Direction(models.TextChoices):
        OUTBOUND = "outbound", _("Enviado")
        INBOUND = "inbound", _("Recibido")

    class State(models.TextChoices):
        PENDING = "pending", _("Pendiente")
        SENT = "sent", _("Enviado")
        ACCEPTED = "accepted", _("Aceptado")
        REJECTED = "rejected", _("Rechazado")
        FAILED = "failed", _("Falló")
        CANCELLED = "cancelled", _("Cancelado")
        CLOSED = "closed", _("Cerrado")

    request_id = models.CharField(
        verbose_name=_("identificador de solicitud"), max_length=100, default=new_request_id, editable=False
    )
    incident = models.ForeignKey(
        "incidents.Incident",
        verbose_name=_("incidente"),
        on_delete=models.PROTECT,
        related_name="escalations",
    )
    peer = models.ForeignKey(
        Peer, verbose_name=_("centro par"), on_delete=models.PROTECT, related_name="escalations"
    )
    direction = models.CharField(verbose_name=_("sentido"), max_length=8, choices=Direction.choices)
    kind = models.CharField(verbose_name=_("tipo"), max_length=24, choices=EscalationKind.choices)
    state = models.CharField(
        verbose_name=_("estado"), max_length=12, choices=State.choices, default=State.PENDING
    )
    reason = models.TextField(verbose_name=_("motivo"), blank=True)
    last_error = models.TextField(verbose_name=_("último error"), blank=True)
    remote_incident_id = models.CharField(
        verbose_name=_("id del incidente remoto"), max_length=200, blank=True
    )
    remote_folio = models.CharField(verbose_name=_("folio remoto"), max_length=64, blank=True)
    remote_status = models.CharField(verbose_name=_("estado remoto"), max_length=32, blank=True)
    out_seq = models.PositiveIntegerField(verbose_name=_("secuencia enviada"), default=0)
    in_seq = models.PositiveIntegerField(verbose_name=_("secuencia recibida"), default=0)
    remote_resources = models.JSONField(verbose_name=_("unidades del otro centro"), default=list, blank=True)
    # The ordered stream its messages to the peer travel in (delivery lease on the stream).
    stream = models.OneToOneField(
        OutboxStream, on_delete=models.PROTECT, null=True, editable=False, related_name="escalation"
    )
    created_by = models.ForeignKey(
        "accounts.User",
        verbose_name=_("creado por"),
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    # Response times between centres (dashboard "Tiempos entre centros"): when the request was made (sent from
    # here, or received here; a renewal starts again), when the peer took it (outbound: it answered 2xx to the
    # request message) and when the request for service was answered (accepted or rejected: by the peer for an
    # outbound one, by our dispatcher for an inbound one).
    requested_at = models.DateTimeField(verbose_name=_("solicitado"), default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(verbose_name=_("entregado"), null=True, blank=True)
    answered_at = models.DateTimeField(verbose_name=_("respondido"), null=True, blank=True)
    # Inbound: when the emergency call reached the sender (its EIDO's first callStartTimestamp), beside our
    # receipt time: how old the emergency already is when it arrives here.
    remote_call_at = models.DateTimeField(verbose_name=_("llamada en el otro centro"), null=True, blank=True)
    created_at = models.DateTimeField(verbose_name=_("creado"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("actualizado"), auto_now=True)

    # States in which changes to the incident still flow to the peer as updates.
    SHARED_STATES = (State.PENDING, State.SENT, State.ACCEPTED, State.CLOSED)

    class Meta:
        verbose_name = _("escalamiento")
        verbose_name_plural = _("escalamientos")
        constraints = [
            models.UniqueConstraint(fields=["peer", "request_id"], name="uniq_escalation_request_per_peer"),
            # One live share per incident and peer; a rejected or cancelled one may be escalated again.
            models.UniqueConstraint(
                fields=["incident", "peer"],
                condition=~Q(state__in=["rejected", "cancelled"]),
                name="one_live_escalation_per_incident_peer",
            ),
        ]
        indexes = [
            models.Index(fields=["incident", "state"], name="escalation_incident_state"),
            # A peer's request for an incident whose earlier share it cancelled finds our copy (still open?).
            models.Index(
                fields=["peer", "remote_folio"],
                condition=Q(direction="inbound", state="cancelled"),
                name="escalation_cancelled_inbound",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.incident_id} ↔ {self.peer_id} ({self.direction}, {self.state})"


class OutboxMessage(models.Model):
    """A message to a peer, written in the transaction of the change it reports (transactional outbox) and
    delivered in id order per stream by interstate.delivery. Messages about an escalation name it."""

    class Kind(models.TextChoices):
        REQUEST_FOR_SERVICE = "requestForService", "requestForService"
        REQUEST_AWARENESS = "requestAwareness", "requestAwareness"
        UPDATE = "update", "update"
        CANCEL = "cancel", "cancel"
        RESPONSE = "response", "response"
        VEHICLE_ALERT = "vehicleAlert", "vehicleAlert"
        VEHICLE_SIGHTING = "vehicleSighting", "vehicleSighting"

    class State(models.TextChoices):
        PENDING = "pending", _("Pendiente")
        DELIVERED = "delivered", _("Entregado")
        DEAD = "dead", _("Descartado")

    stream = models.ForeignKey(
        OutboxStream, verbose_name=_("flujo"), on_delete=models.CASCADE, related_name="messages"
    )
    escalation = models.ForeignKey(
        Escalation,
        verbose_name=_("escalamiento"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="outbox",
    )
    peer = models.ForeignKey(
        Peer, verbose_name=_("centro par"), on_delete=models.PROTECT, related_name="outbox"
    )
    kind = models.CharField(verbose_name=_("tipo"), max_length=20, choices=Kind.choices)
    idempotency_key = models.UUIDField(
        verbose_name=_("clave de idempotencia"), default=uuid.uuid4, unique=True, editable=False
    )
    seq = models.PositiveIntegerField(verbose_name=_("secuencia"), null=True, blank=True)
    body = models.JSONField(
        verbose_name=_("cuerpo"),
    )
    state = models.CharField(
        verbose_name=_("estado"), max_length=10, choices=State.choices, default=State.PENDING
    )
    attempts = models.PositiveIntegerField(verbose_name=_("intentos"), default=0)
    last_error = models.TextField(verbose_name=_("último error"), blank=True)
    next_attempt_at = models.DateTimeField(verbose_name=_("próximo intento"), null=True, blank=True)
    created_at = models.DateTimeField(verbose_name=_("creado"), auto_now_add=True)
    delivered_at = models.DateTimeField(verbose_name=_("entregado"), null=True, blank=True)

    class Meta:
        verbose_name = _("mensaje saliente")
        verbose_name_plural = _("mensajes salientes")
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["stream", "id"], condition=Q(state="pending"), name="outbox_pending_by_stream"
            ),
            models.Index(fields=["created_at"], condition=Q(state="pending"), name="outbox_pending_age"),
        ]


class InboundMessage(models.Model):
    """A message received from a peer, by its idempotency key: a repeated POST gets the original answer."""

    peer = models.ForeignKey(
        Peer, verbose_name=_("centro par"), on_delete=models.PROTECT, related_name="inbound"
    )
    idempotency_key = models.CharField(verbose_name=_("clave de idempotencia"), max_length=80)
    kind = models.CharField(verbose_name=_("tipo"), max_length=20)
    request_id = models.CharField(verbose_name=_("identificador de solicitud"), max_length=100, blank=True)
    received_at = models.DateTimeField(verbose_name=_("recibido"), auto_now_add=True)
    status_code = models.PositiveSmallIntegerField(
        verbose_name=_("código HTTP"),
    )
    response = models.JSONField(verbose_name=_("respuesta"), default=dict)

    class Meta:
        verbose_name = _("mensaje recibido")
        verbose_name_plural = _("mensajes recibidos")
        constraints = [
            models.UniqueConstraint(fields=["peer", "idempotency_key"], name="uniq_inbound_key_per_peer")
        ]
        # A cancel of a request that had not reached us is looked up when (if) the request comes.
        indexes = [
            models.Index(
                fields=["peer", "request_id"], condition=Q(kind="cancel"), name="inbound_cancel_by_request"
            )
        ]


class PeerNonce(models.Model):
    """A (key id, nonce) pair a peer's signed request used: seen once within the timestamp window (replays are
    refused by the unique constraint, in the database every web process shares). Pruned after the window."""

    key_id = models.CharField(max_length=64)
    nonce = models.CharField(max_length=64)
    seen_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key_id", "nonce"], name="uniq_peer_nonce")]


class VehicleAlert(models.Model):
    """A vehicle we publish to peers (a plate on a shared hotlist): `source_key` is the publishing app's stable
    key for it, `alert_id` what the peers know it by; `peers` the codes it was published to (only they may
    report sightings of it)."""

    class State(models.TextChoices):
        ACTIVE = "active", _("Vigente")
        WITHDRAWN = "withdrawn", _("Retirada")
        EXPIRED = "expired", _("Vencida")

    alert_id = models.CharField(max_length=100, unique=True, default=new_request_id, editable=False)
    source_key = models.CharField(max_length=64, unique=True)
    plate = models.CharField(verbose_name=_("placa"), max_length=16)
    list_kind = models.CharField(verbose_name=_("tipo de lista"), max_length=32)
    reason = models.CharField(verbose_name=_("motivo"), max_length=300, blank=True)
    vehicle = models.JSONField(default=dict, blank=True)
    valid_until = models.DateTimeField(verbose_name=_("vigente hasta"), null=True, blank=True)
    state = models.CharField(
        verbose_name=_("estado"), max_length=10, choices=State.choices, default=State.ACTIVE
    )
    peers = models.JSONField(verbose_name=_("centros pares"), default=list, blank=True)
    created_at = models.DateTimeField(verbose_name=_("creada"), auto_now_add=True)
    updated_at = models.DateTimeField(verbose_name=_("actualizada"), auto_now=True)

    class Meta:
        verbose_name = _("alerta de vehículo compartida")
        verbose_name_plural = _("alertas de vehículos compartidas")
        indexes = [
            models.Index(fields=["valid_until"], condition=Q(state="active"), name="vehicle_alert_expiry")
        ]


class PeerRequestLog(models.Model):
    """Audit of every peer request, inbound and outbound, refused ones included. Append-only."""

    class Direction(models.TextChoices):
        INBOUND = "inbound", _("Recibida")
        OUTBOUND = "outbound", _("Enviada")

    at = models.DateTimeField(verbose_name=_("hora"), auto_now_add=True, db_index=True)
    peer = models.ForeignKey(
        Peer, verbose_name=_("centro par"), on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    peer_code = models.CharField(
        verbose_name=_("clave del centro"),
        max_length=64,
        blank=True,
        help_text=_("Clave presentada o del par."),
    )
    direction = models.CharField(verbose_name=_("sentido"), max_length=8, choices=Direction.choices)
    method = models.CharField(verbose_name=_("método"), max_length=8)
    path = models.CharField(verbose_name=_("ruta"), max_length=300)
    action = models.CharField(verbose_name=_("acción"), max_length=32)
    request_id = models.CharField(verbose_name=_("identificador de solicitud"), max_length=100, blank=True)
    incident_folio = models.CharField(verbose_name=_("folio del incidente"), max_length=32, blank=True)
    status_code = models.PositiveSmallIntegerField(verbose_name=_("código HTTP"), null=True, blank=True)
    result = models.CharField(verbose_name=_("resultado"), max_length=64)
    remote_addr = models.CharField(verbose_name=_("dirección remota"), max_length=64, blank=True)
    detail = models.TextField(verbose_name=_("detalle"), blank=True)

    class Meta:
        verbose_name = _("bitácora de peticiones entre centros")
        verbose_name_plural = _("bitácora de peticiones entre centros")
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["peer", "at"], name="peerlog_peer_at")]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValueError("Audit entries are append-only")
        super().save(*args, **kwargs)
