"""Domain errors and the one API exception handler that maps them to `{message, code, fields}`."""

import sys

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import OperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.utils.translation import gettext_lazy as _
from django.views.defaults import bad_request as html_bad_request
from django.views.defaults import page_not_found as html_page_not_found
from django.views.defaults import server_error as html_server_error
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler


class DomainError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message, *, code: str | None = None, status: int | None = None, fields=None):
        super().__init__(str(message))
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status
        self.fields = fields or {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class UnitNotAvailable(Conflict):
    code = "unit_not_available"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class StaleWrite(DomainError):
    """The client wrote against an old version (If-Match / version field)."""

    status = 412
    code = "stale_write"

    def __init__(self, *, current_version: int):
        super().__init__(
            _("El registro cambió mientras lo editaba; recargue y vuelva a intentar."),
            fields={"version": [str(current_version)]},
        )


def _flatten(detail):
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [str(item) if not isinstance(item, dict | list) else _flatten(item) for item in detail]
    return [str(detail)]


def api_exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(
            {"message": str(exc.message), "code": exc.code, "fields": exc.fields}, status=exc.status
        )
    if isinstance(exc, DjangoValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(fields)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        # A JSON null body: DRF says "No data provided" as a literal gettext never sees (code "null").
        if [getattr(d, "code", None) for d in fields.get("non_field_errors", ())] == ["null"]:
            fields = {**fields, "non_field_errors": [_("Se espera un objeto JSON.")]}
        response.data = {
            "message": str(_("Datos inválidos; revise los campos marcados.")),
            "code": "invalid",
            "fields": _flatten(fields),
        }
    else:
        detail = getattr(exc, "detail", "")
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = {"message": str(detail), "code": code, "fields": {}}
    if response.status_code == status.HTTP_415_UNSUPPORTED_MEDIA_TYPE:
        response.data["code"] = "unsupported_media_type"
    return response


def bad_request(request, exception, *args, **kwargs):
    """handler400: Django answers some bad requests itself, before any view (a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE read by the CSRF check of a session request, too many fields). The API
    answers them in its documented JSON shape; pages keep Django's HTML."""
    if not request.path.startswith("/api/"):
        return html_bad_request(request, exception, *args, **kwargs)
    if isinstance(exception, RequestDataTooBig):
        body = {
            "message": str(_("La solicitud es demasiado grande.")),
            "code": "request_too_large",
            "fields": {},
        }
        return JsonResponse(body, status=413)
    body = {"message": str(_("Solicitud inválida.")), "code": "bad_request", "fields": {}}
    return JsonResponse(body, status=400)


def not_found(request, exception, *args, **kwargs):
    """handler404: an API path that matches no route (`/api/v1/escalations/abc/accept`, an id that is not a
    number) is answered in the API's JSON shape, as the views' own 404s are; pages keep Django's HTML."""
    if not request.path.startswith("/api/"):
        return html_page_not_found(request, exception, *args, **kwargs)
    body = {"message": str(_("No existe el recurso solicitado.")), "code": "not_found", "fields": {}}
    return JsonResponse(body, status=404)


def server_error(request, *args, **kwargs):
    """handler500: a request that could not get a database connection in time (overload, a database
    restart) is answered 503 with Retry-After — a client or a peer's outbox retries it — in the API's JSON
    shape on API paths; anything else is Django's 500 page."""
    # Django wraps the driver's errors (psycopg_pool.PoolTimeout included) in its OperationalError.
    if not isinstance(sys.exc_info()[1], OperationalError):
        return html_server_error(request, *args, **kwargs)
    message = str(_("Servicio saturado o base de datos no disponible; reintente en unos segundos."))
    if request.path.startswith("/api/"):
        response = JsonResponse({"message": message, "code": "unavailable", "fields": {}}, status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = "2"
    return response
