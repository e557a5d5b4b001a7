"""INEGI jurisdictions (states, municipalities) over REST: list, one with its boundary, and locate."""

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsConsoleUser
from cad.api import errors
from cad.errors import NotFound
from geo.locator import locate
from geo.models import Jurisdiction


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
        lat = serializers.FloatField(min_value=-90, max_value=90)
        lon = serializers.FloatField(min_value=-180, max_value=180)

    class LocatedRefOutput(serializers.Serializer):
        cvegeo = serializers.CharField()
        name = serializers.CharField()
        cve_ent = serializers.CharField()

    class LocateOutput(serializers.Serializer):
        lat = serializers.FloatField()
        lon = serializers.FloatField()
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
