"""Server-rendered console pages (thin: role check, page settings).

The pages carry no domain logic: their ES modules (console/static/console/) read and write through the REST
API and stay current through the console websocket (console.consumers)."""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, Resolver404, resolve, reverse
from django.utils.translation import gettext as _

from accounts.models import Role
from accounts.permissions import CONSOLE_ROLES, DISPATCH_ROLES, SUPERVISION_ROLES
from incidents import lifecycle
from incidents.models import (
    CALLER_DEVICE_SOURCES,
    AssignmentStatus,
    CallDisposition,
    IncidentStatus,
    Line,
    LocationSource,
    Priority,
)
from interstate.models import Escalation, EscalationKind
from units.models import UNIT_TRANSITIONS, Capability, UnitStatus


def _dashboard_url() -> str | None:
    """The supervisors' dashboard page, when that app serves one."""
    for name in ("dashboard", "dashboard:index", "dashboard-home"):
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    try:
        resolve("/dashboard/")
    except Resolver404:
        return None
    return "/dashboard/"


def _require_roles(user, roles) -> None:
    if not (user.has_role(*roles) and user.center_id):
        raise PermissionDenied


def _ui_strings() -> dict:
    """Strings the ES modules show, translated here through gettext (msgids in Spanish)."""
    return {
        "server_error": _(
            "Error del servidor (HTTP %(status)s). Revise si se guardó antes de repetir; si persiste, avise a soporte."
        ),
        "conn_connecting": _("Conectando…"),
        "conn_open": _("En línea"),
        "conn_degraded": _("En línea, sin tiempo real"),
        "conn_closed": _("Sin conexión; reintentando…"),
        "conn_refused": _("Conexión rechazada: su cuenta no tiene acceso a la consola."),
        "conn_ended": _("Sesión terminada"),
        "conn_ended_banner": _(
            "Su sesión terminó. Inicie sesión en otra pestaña y registre aquí esta llamada: lo capturado se conserva."
        ),
        "conn_lost_banner": _("Se perdió la conexión en tiempo real; reconectando y recuperando eventos…"),
        "resync_banner": _("La consola se atrasó demasiado; se recargó el estado completo."),
        "overload_banner": _("Hubo eventos perdidos; la consola los recuperó."),
        "new_high_priority": _("Nuevo incidente de prioridad ALTA: %(folio)s %(name)s"),
        "t_arrived": _("Llegada de la llamada"),
        "t_opened": _("Apertura"),
        "t_dispatched": _("Primer despacho"),
        "t_en_route": _("Primera en camino"),
        "t_on_scene": _("Primera en el lugar"),
        "t_closed": _("Cierre"),
        "no_units": _("Sin unidades asignadas."),
        "no_recommendations": _("Sin unidades disponibles con posición reciente."),
        "recs_no_location": _(
            "El incidente no tiene ubicación; capture coordenadas para recomendar unidades."
        ),
        "recs_handled_by": _(
            "Lo atiende %(peer)s con sus unidades: no se sugiere ninguna propia; asigne (1–5) solo si envía apoyo."
        ),
        "suggested": _("sugerida"),
        "assign": _("Asignar"),
        "assign_suggested": _("Asignar la sugerida"),
        "unit": _("Unidad"),
        "agency": _("Corporación"),
        "capability": _("Capacidad"),
        "distance": _("Distancia"),
        "eta": _("Llegada estimada"),
        "position_age": _("Antigüedad de posición"),
        "key": _("Tecla"),
        "chosen_type": _("Elegido: %(code)s %(name)s (prioridad %(priority)s)"),
        "meters_away": _("a %(m)s m"),
        "link": _("Vincular"),
        "call_linked": _("Llamada vinculada al incidente %(folio)s."),
        "incident_created": _("Incidente %(folio)s creado."),
        "call_recorded": _("Llamada registrada (sin incidente)."),
        "next_call": _("para la siguiente llamada."),
        "outside_area_recorded": _("Ubicación fuera del área de servicio (confirmada)."),
        "no_location": _("Sin ubicación"),
        "t_reopened": _("Reapertura"),
        "beyond_eta": _("Más allá del límite de tiempo"),
        "beyond_distance": _("Más allá del límite de distancia"),
        "other_municipality": _("otro municipio"),
        "none_within_limit": _(
            "Ninguna unidad de %(caps)s dentro del límite (%(min)s min o %(km)s km): elija a mano si es necesario."
        ),
        "any_unit": _("cualquier tipo"),
        "jurisdiction": _("Municipio"),
        "loc_search": _("Buscar dirección o lugar"),
        "loc_placeholder": _("Calle, colonia, localidad o municipio"),
        "loc_candidates": _("Candidatos"),
        "loc_found": _("%(n)s candidatos: ↑/↓ para elegir, Enter para fijar."),
        "loc_none": _("Sin candidatos; pruebe otro nombre, capture coordenadas o haga clic en el mapa."),
        "loc_apply": _("Fijar coordenadas"),
        "loc_use_point": _("Usar este punto"),
        "loc_clicked": _("Punto marcado en el mapa: %(where)s."),
        "loc_set": _("Ubicación fijada: %(where)s."),
        "near_place": _("cerca de %(place)s (%(m)s m)"),
        "no_jurisdiction": _("fuera de los límites cargados"),
        "lat": _("Latitud"),
        "lon": _("Longitud"),
        "required": _("Requerido."),
        "text_missing": _("Escriba el texto antes de enviar."),
        "outside_area": _("fuera del área"),
        "confirm_outside": _("Confirmar ubicación fuera del área"),
        "cancel": _("Cancelar"),
        "swap_coordinates": _("Intercambiar latitud y longitud"),
        "md_label": _("Despacho manual: indicativo"),
        "md_placeholder": _("p. ej. PE-101; Enter elige, Ctrl+Enter despacha"),
        "md_options": _("Unidades disponibles"),
        "md_send": _("Despachar las elegidas"),
        "md_chosen": _("Elegidas: %(units)s"),
        "md_none": _("Ninguna elegida."),
        "md_done": _("Despachadas: %(units)s"),
        "md_unavailable": _("Esa unidad no está disponible."),
        "all": _("Todas"),
        "status_menu": _("Estados de %(callsign)s"),
        "board_shown": _("%(n)s de %(of)s"),
        **_interstate_strings(),
    }


def _interstate_strings() -> dict:
    """Strings of the interstate section (console/static/console/interstate.js)."""
    return {
        "origin_label": _("Recibido de otro centro:"),
        "origin_text": _("%(peer)s (%(code)s), folio %(folio)s"),
        "origin_call": _("llamada en %(code)s a las %(time)s"),
        "is_origin_title": _("Escalado por %(peer)s, folio %(folio)s"),
        # The origin centre cancelled its request (queue tag "← MEX MEX-… · cancelada", and the detail).
        "origin_cancelled": _("cancelada"),
        "origin_cancelled_text": _("%(peer)s canceló la solicitud"),
        "handled_by": _("Lo atiende %(peer)s"),
        "flag_inside": _("Ubicado en el área de %(peer)s."),
        "flag_near": _("A %(km)s km del área de %(peer)s."),
        "escalate_to": _("Escalar a %(peer)s"),
        "notify_to": _("Avisar a %(peer)s"),
        "escalated_to": _("Solicitud de servicio para %(peer)s registrada; se entrega en segundo plano."),
        "notified_to": _("Aviso para %(peer)s registrado; se entrega en segundo plano."),
        "answer_prompt": _("%(peer)s solicita atender este incidente (su folio %(folio)s)."),
        "inbound_banner": _(
            "%(peer)s pide atender su incidente %(remote)s (aquí %(folio)s): acéptelo (Y) o rechácelo (R)."
        ),
        "outbound_rejected_banner": _(
            "%(peer)s rechazó la solicitud de %(folio)s: %(reason)s. El incidente sigue a cargo de este centro."
        ),
        "peer_disabled": _(
            "El enlace con %(peer)s está deshabilitado: lo pendiente espera a que un administrador lo habilite."
        ),
        "request_reason": _("Motivo: %(reason)s"),
        "esc_accept": _("Aceptar"),
        "esc_reject": _("Rechazar"),
        "esc_reject_reason": _("Motivo del rechazo"),
        # The direction, in words that are not a state's ("Enviado" is one).
        "esc_outbound": _("Hacia %(peer)s"),
        "esc_inbound": _("Desde %(peer)s"),
        "remote_status": _("allá: %(status)s"),
        "last_error": _("Último error (intento %(attempts)s): %(error)s"),
        "rejected_reason": _("Motivo: %(reason)s"),
        "remote_units": _("Unidades de %(peer)s"),
        "esc_retry": _("Reintentar"),
        "esc_notice_received": _("Aviso recibido"),
        "esc_upgrade": _("Pedir a %(peer)s que lo atienda"),
        "esc_retry_sent": _("Reintento enviado a %(peer)s; el estado cambia cuando responda."),
        "esc_cancel": _("Cancelar escalamiento"),
        "esc_cancel_confirm": _(
            "¿Cancelar el escalamiento a %(peer)s? Si ese centro ya lo atiende, el incidente vuelve a este. "
            "Motivo (opcional; se le envía):"
        ),
        "menu_no_peers": _("No hay centros habilitados a los que escalar; consulte a supervisión."),
        "menu_open": _("Escalar a otro centro"),
        "menu_peer": _("Centro"),
        "menu_kind": _("Tipo"),
        "menu_reason": _("Motivo (opcional)"),
        "menu_send": _("Enviar"),
    }


def _interstate_labels() -> dict:
    """Escalation states and kinds as the console shows them (the interstate models' choices), and the statuses
    of a peer's units on a shared incident (their assignment's status, e.g. "cleared" once released)."""
    return {
        "states": {value: str(label) for value, label in Escalation.State.choices},
        "kinds": {value: str(label) for value, label in EscalationKind.choices},
        "resource_statuses": {value: str(label) for value, label in AssignmentStatus.choices},
    }


def location_sources(line: str | None) -> list[tuple[str, str]]:
    """The location sources an intake form offers: for 089 never the tipster's handset (the API refuses it)."""
    return [
        choice
        for choice in LocationSource.choices
        if not (line == Line.ANONYMOUS and choice[0] in CALLER_DEVICE_SOURCES)
    ]


def _page_config(request, *, line: str | None = None) -> dict:
    """What the page's modules need that is not in the API: targets, labels, transitions, map defaults."""
    center = request.user.center
    leaflet = settings.LEAFLET_CONFIG
    return {
        "center": {
            "code": center.code,
            "name": center.name,
            "cve_ent": center.cve_ent,
            "timezone": center.timezone,
        },
        "user": {"username": request.user.get_username(), "role": request.user.role},
        "can_dispatch": request.user.role in DISPATCH_ROLES,
        "can_supervise": request.user.role in SUPERVISION_ROLES,
        "line": line,
        "targets": {
            "minimum_data_s": settings.CAD["TARGET_MINIMUM_DATA_S"],
            "dispatch_s": settings.CAD["TARGET_DISPATCH_S"],
            "on_scene_s": settings.CAD["TARGET_ON_SCENE_S"],
        },
        "map": {
            "center": list(leaflet["DEFAULT_CENTER"]),
            "zoom": leaflet["DEFAULT_ZOOM"],
            "tiles": [list(t[:2]) for t in leaflet.get("TILES") or []],
            "attribution": leaflet.get("ATTRIBUTION_PREFIX", ""),
            "boundary": center.cve_ent or None,
        },
        "unit_statuses": {value: str(label) for value, label in UnitStatus.choices},
        "capabilities": {code: _(name) for code, name in Capability.objects.values_list("code", "name")},
        "location_sources": {value: str(label) for value, label in location_sources(line)},
        "lifecycle": {"timers": {status: settings.CAD[key] for status, key in lifecycle.TIMERS.items()}},
        "unit_transitions": {key: sorted(value) for key, value in UNIT_TRANSITIONS.items()},
        "incident_statuses": {value: str(label) for value, label in IncidentStatus.choices},
        "priorities": {value: str(label) for value, label in Priority.choices},
        "ws_path": "/ws/console/",
        "heartbeat_s": settings.CAD["HEARTBEAT_S"],
        "strings": _ui_strings(),
        "interstate": _interstate_labels(),
    }


def _render_page(request, template: str, *, line: str | None = None, **context):
    config = _page_config(request, line=line)
    return render(
        request,
        template,
        {
            "config": config,
            "targets": config["targets"],
            "dashboard_url": _dashboard_url(),
            "location_sources": location_sources(line),
            "call_dispositions": CallDisposition.choices,
            **context,
        },
    )


@login_required
def home(request):
    """Send each role to its screen."""
    user = request.user
    if user.role == Role.CALL_TAKER:
        return redirect("intake")
    if user.role in (Role.SUPERVISOR, Role.ADMINISTRATOR):
        return redirect(_dashboard_url() or reverse("console"))
    if user.role == Role.DISPATCHER:
        return redirect("console")
    raise PermissionDenied  # service accounts have no screens


@login_required
def intake(request):
    """9-1-1 call intake."""
    _require_roles(request.user, CONSOLE_ROLES)
    return _render_page(request, "console/intake.html", line="911", anonymous=False)


@login_required
def intake_089(request):
    """089 anonymous tip intake: the page has no caller fields at all."""
    _require_roles(request.user, CONSOLE_ROLES)
    return _render_page(request, "console/intake.html", line="089", anonymous=True)


@login_required
def console(request):
    """Dispatcher console: incident queue, incident detail, unit board."""
    _require_roles(request.user, CONSOLE_ROLES)
    return _render_page(request, "console/console.html")
