"""Plumbing shared by the API modules: the error body schema, If-Match handling, the JSON parser."""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import pagination, parsers, serializers
from rest_framework.exceptions import ParseError, ValidationError


class ErrorOutput(serializers.Serializer):
    message = serializers.CharField()
    code = serializers.CharField()
    fields = serializers.DictField(child=serializers.JSONField())


def errors(*statuses: int, **described: str) -> dict:
    """OpenAPI responses for error statuses: `errors(400, 404)` → {400: ErrorOutput, 404: ErrorOutput}."""
    texts = {
        400: gettext_lazy("Datos inválidos"),
        401: gettext_lazy("Sin autenticar"),
        403: gettext_lazy("Sin permiso"),
        404: gettext_lazy("No existe"),
        409: gettext_lazy("Conflicto con el estado actual"),
        412: gettext_lazy("Versión obsoleta (If-Match / version)"),
        413: gettext_lazy("Lote demasiado grande"),
        422: gettext_lazy("Idempotency-Key ya usada con otro contenido"),
    }
    return {
        status: OpenApiResponse(ErrorOutput, description=described.get(f"e{status}", texts.get(status, "")))
        for status in (401, 403, *statuses)
    }


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's, except that a `limit` or `offset` that is not a whole number (≥ 1, ≥ 0) is a 400 naming it,
    where DRF silently uses its default. A limit over `max_limit` is capped (documented): uncapped, a huge one
    reached the database (PostgreSQL: bigint out of range, a 500)."""

    max_limit = 1000

    def get_limit(self, request):
        self._check(request, self.limit_query_param, minimum=1)
        return super().get_limit(request)

    def get_offset(self, request):
        self._check(request, self.offset_query_param, minimum=0)
        return super().get_offset(request)

    @staticmethod
    def _check(request, name: str, *, minimum: int) -> None:
        raw = request.query_params.get(name)
        if raw in (None, ""):
            return
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise ValidationError({name: [_("Número entero mayor o igual que %(n)s.") % {"n": minimum}]})


IF_MATCH = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=gettext_lazy('Versión esperada, p. ej. "3" (alternativa al campo version).'),
)


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description=gettext_lazy(
        "Una clave por operación (p. ej. un UUID por formulario): repetir la solicitud con la misma clave "
        "devuelve la respuesta original sin crear nada otra vez."
    ),
)


def expected_version(request, body_version: int | None) -> int | None:
    """The version the client read: the body's `version`, else the If-Match header ("3", W/"3" or 3)."""
    if body_version is not None:
        return body_version
    header = request.headers.get("If-Match")
    if not header:
        return None
    raw = header.strip().removeprefix("W/").strip('"')
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise ValidationError({"If-Match": [_('Se espera la versión entre comillas, p. ej. "3".')]})
    return int(raw)


class FloatField(serializers.FloatField):
    """DRF's FloatField, but a JSON boolean is not a number: Python reads `true` as 1.0, which would put an
    incident at latitude 1 instead of telling the client its field is wrong."""

    def to_internal_value(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        return super().to_internal_value(data)


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, but a body nested past Python's recursion limit is a 400 like any malformed body,
    not a RecursionError (500), and a malformed body is answered in the user's language (DRF's message ends
    with the decoder's English, e.g. "'utf-8' codec can't decode byte 0xff")."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_("JSON demasiado anidado.")) from None
        except ParseError:
            raise ParseError(_("JSON inválido.")) from None
