"""INEGI jurisdictions (states, municipalities) over REST: list, one with its boundary, and locate; and
geocoding (search an address or place, reverse a point) through the configured geocoder."""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsConsoleUser
from cad.api import FloatField, errors
from cad.errors import NotFound
from geo.geocoding import GeocoderUnavailable, get_geocoder
from geo.locator import locate, place_of
from geo.models import Jurisdiction
from geo.selectors import boundaries_geojson
from geo.validation import in_service_area


class JurisdictionOutput(serializers.Serializer):
    cvegeo = serializers.CharField()
    kind = serializers.CharField()
    cve_ent = serializers.CharField()
    name = serializers.CharField()
    parent = serializers.CharField(source="parent.cvegeo", allow_null=True, default=None)
    bbox = serializers.SerializerMethodField(help_text=gettext_lazy("[min_lon, min_lat, max_lon, max_lat]"))

    def get_bbox(self, jurisdiction) -> list[float]:
        return [jurisdiction.min_lon, jurisdiction.min_lat, jurisdiction.max_lon, jurisdiction.max_lat]


class JurisdictionGeometryOutput(JurisdictionOutput):
    geometry = serializers.JSONField(help_text=gettext_lazy("GeoJSON (WGS84)"))
    source = serializers.CharField()


class JurisdictionListApi(APIView):
    permission_classes = [IsConsoleUser]

    class JurisdictionQuery(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Jurisdiction.Kind.choices, required=False)
        cve_ent = serializers.RegexField(
            r"^\d{2}$", required=False, help_text=gettext_lazy("Solo esta entidad.")
        )

    @extend_schema(
        operation_id="jurisdictions_list",
        parameters=[JurisdictionQuery],
        responses={200: JurisdictionOutput(many=True), **errors(400)},
        summary=gettext_lazy("Entidades y municipios (sin geometría)"),
    )
    def get(self, request):
        query = self.JurisdictionQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = Jurisdiction.objects.select_related("parent").only(
            "cvegeo", "kind", "cve_ent", "name", "parent__cvegeo", "min_lat", "min_lon", "max_lat", "max_lon"
        )
        if "kind" in query.validated_data:
            rows = rows.filter(kind=query.validated_data["kind"])
        if "cve_ent" in query.validated_data:
            rows = rows.filter(cve_ent=query.validated_data["cve_ent"])
        return Response(JurisdictionOutput(rows.order_by("cvegeo"), many=True).data)


class JurisdictionBoundariesApi(APIView):
    """The console mini-map's base layer: every state, and the municipalities of the user's state."""

    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="jurisdictions_boundaries",
        responses={200: OpenApiTypes.OBJECT},
        summary=gettext_lazy("Límites simplificados (GeoJSON) para el mapa sin mosaicos"),
    )
    def get(self, request):
        return Response(boundaries_geojson(municipalities_of=request.user.center.cve_ent or None))


class JurisdictionDetailApi(APIView):
    permission_classes = [IsConsoleUser]

    @extend_schema(
        operation_id="jurisdictions_retrieve",
        responses={200: JurisdictionGeometryOutput, **errors(404)},
        summary=gettext_lazy("Una jurisdicción con su límite GeoJSON"),
    )
    def get(self, request, cvegeo):
        jurisdiction = None
        if cvegeo.isalnum() and cvegeo.isascii() and len(cvegeo) <= 16:
            jurisdiction = Jurisdiction.objects.select_related("parent").filter(cvegeo=cvegeo).first()
        if jurisdiction is None:
            raise NotFound(_("No existe la jurisdicción %(cvegeo)s.") % {"cvegeo": cvegeo[:16]})
        return Response(JurisdictionGeometryOutput(jurisdiction).data)


class JurisdictionLocateApi(APIView):
    permission_classes = [IsConsoleUser]

    class LocateQuery(serializers.Serializer):
        lat = FloatField(min_value=-90, max_value=90)
        lon = FloatField(min_value=-180, max_value=180)

    class LocatedRefOutput(serializers.Serializer):
        cvegeo = serializers.CharField()
        name = serializers.CharField()
        cve_ent = serializers.CharField()

    class LocateOutput(serializers.Serializer):
        lat = FloatField()
        lon = FloatField()
        state = serializers.DictField(allow_null=True)
        municipality = serializers.DictField(allow_null=True)

    @extend_schema(
        operation_id="jurisdictions_locate",
        parameters=[LocateQuery],
        responses={200: LocateOutput, **errors(400)},
        summary=gettext_lazy("Entidad y municipio que contienen un punto"),
    )
    def get(self, request):
        query = self.LocateQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        lat, lon = query.validated_data["lat"], query.validated_data["lon"]
        state, municipality = locate(lat, lon)
        ref = self.LocatedRefOutput
        return Response(
            {
                "lat": lat,
                "lon": lon,
                "state": ref(state).data if state else None,
                "municipality": ref(municipality).data if municipality else None,
            }
        )


# --- Geocoding ------------------------------------------------------------------------------
class CandidateOutput(serializers.Serializer):
    label = serializers.CharField()
    lat = FloatField()
    lon = FloatField()
    kind = serializers.ChoiceField(choices=["locality", "municipality", "address", "place"])
    source = serializers.CharField()
    municipality = serializers.CharField(allow_null=True)
    state = serializers.CharField(allow_null=True)
    cvegeo = serializers.CharField(allow_null=True)
    distance_m = FloatField(allow_null=True)
    inside_service_area = serializers.BooleanField(
        help_text=gettext_lazy("Dentro del área de servicio del centro (si no, pedirá confirmación).")
    )


def _with_area(candidate, *, cve_ent: str) -> dict:
    return {
        **candidate.as_dict(),
        "inside_service_area": in_service_area(candidate.lat, candidate.lon, cve_ent=cve_ent),
    }


class GeocodeSearchApi(APIView):
    permission_classes = [IsConsoleUser]

    class SearchQuery(serializers.Serializer):
        q = serializers.CharField(max_length=200)
        limit = serializers.IntegerField(min_value=1, max_value=20, required=False, default=8)

    class SearchOutput(serializers.Serializer):
        geocoder = serializers.CharField()
        candidates = CandidateOutput(many=True)

    @extend_schema(
        operation_id="geocode_search",
        parameters=[SearchQuery],
        responses={200: SearchOutput, **errors(400, 503, e503=gettext_lazy("Geocodificador no disponible"))},
        summary=gettext_lazy("Buscar una dirección o lugar (candidatos para ubicar un incidente)"),
    )
    def get(self, request):
        query = self.SearchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        cve_ent = request.user.center.cve_ent
        geocoder = get_geocoder()
        found = geocoder.search(
            query.validated_data["q"], limit=query.validated_data["limit"], cve_ent=cve_ent
        )
        return Response(
            self.SearchOutput(
                {"geocoder": geocoder.name, "candidates": [_with_area(c, cve_ent=cve_ent) for c in found]}
            ).data
        )


class GeocodeReverseApi(APIView):
    permission_classes = [IsConsoleUser]

    class ReverseQuery(serializers.Serializer):
        lat = FloatField(min_value=-90, max_value=90)
        lon = FloatField(min_value=-180, max_value=180)

    class ReverseOutput(serializers.Serializer):
        lat = FloatField()
        lon = FloatField()
        state = serializers.CharField(allow_null=True)
        state_cvegeo = serializers.CharField(allow_null=True)
        municipality = serializers.CharField(allow_null=True)
        municipality_cvegeo = serializers.CharField(allow_null=True)
        inside_service_area = serializers.BooleanField()
        geocoder = serializers.CharField()
        place = CandidateOutput(allow_null=True, help_text=gettext_lazy("Lugar con nombre más cercano."))
        warning = serializers.CharField(allow_blank=True)

    @extend_schema(
        operation_id="geocode_reverse",
        parameters=[ReverseQuery],
        responses={200: ReverseOutput, **errors(400)},
        summary=gettext_lazy("Municipio, entidad y lugar más cercano de un punto (clic en el mapa)"),
    )
    def get(self, request):
        query = self.ReverseQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        lat, lon = query.validated_data["lat"], query.validated_data["lon"]
        cve_ent = request.user.center.cve_ent
        geocoder = get_geocoder()
        place, warning = None, ""
        try:
            found = geocoder.reverse(lat, lon)
        except GeocoderUnavailable as exc:  # the jurisdiction below never depends on the geocoder
            found, warning = None, str(exc.message)
        if found is not None:
            place = _with_area(found, cve_ent=cve_ent)
        return Response(
            self.ReverseOutput(
                {
                    "lat": lat,
                    "lon": lon,
                    **place_of(lat, lon),
                    "inside_service_area": in_service_area(lat, lon, cve_ent=cve_ent),
                    "geocoder": geocoder.name,
                    "place": place,
                    "warning": warning,
                }
            ).data
        )
