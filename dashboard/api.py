"""Supervisor APIs: KPIs (rollups or exact) and CSV exports. Thin: validate, call a read, render."""

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsSupervisor
from cad.db import replica_reads
from dashboard.exports import csv_stream, incident_export_rows, monthly_summary_rows
from dashboard.kpis import ROLLUP_GROUPINGS, exact_kpis, rollup_kpis
from dashboard.rollups import rollup_status
from dashboard.selectors import map_snapshot
from dashboard.targets import kpi_targets
from geo.selectors import boundaries_geojson

MAX_RANGE = timedelta(days=400)


class LocalDateTimeField(serializers.Field):
    """`YYYY-MM-DD` (a day in the display time zone) or an ISO 8601 date-time (naive = display zone).
    `end_of_day=True` makes a bare date mean the END of that day (an inclusive `to`)."""

    default_error_messages = {
        "invalid": _("Fecha inválida; use AAAA-MM-DD o AAAA-MM-DDTHH:MM[:SS][±HH:MM]."),
    }

    def __init__(self, *, end_of_day: bool = False, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = str(data).strip()
        try:
            day = parse_date(text)
            moment = None if day else parse_datetime(text.replace(" ", "+", 1) if "T" in text else text)
        except ValueError:
            self.fail("invalid")
        if day is not None:
            if not 2000 <= day.year <= 2999:
                self.fail("invalid")
            if self.end_of_day:
                day += timedelta(days=1)
            return timezone.make_aware(datetime.combine(day, time.min))
        if moment is None:
            self.fail("invalid")
        if not 2000 <= moment.year <= 2999:
            self.fail("invalid")
        # Stored and compared in UTC: offsets past PostgreSQL's ±15:59 (e.g. +20:00) are valid here.
        return (moment if timezone.is_aware(moment) else timezone.make_aware(moment)).astimezone(UTC)

    def to_representation(self, value):
        return value.isoformat()


class RangeInput(serializers.Serializer):
    """[from, to): `to` as a bare date includes that whole day. Default: the last 24 hours."""

    from_ = LocalDateTimeField(required=False)
    to = LocalDateTimeField(required=False, end_of_day=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

    def validate(self, attrs):
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - timedelta(hours=24)
        if start >= end:
            raise serializers.ValidationError({"to": [_("Debe ser posterior a «from».")]})
        if end - start > MAX_RANGE:
            raise serializers.ValidationError({"to": [_("El periodo máximo es de 400 días.")]})
        return {"start": start, "end": end}


_RANGE_PARAMS = [
    OpenApiParameter("from", OpenApiTypes.STR, description="AAAA-MM-DD o fecha-hora ISO 8601"),
    OpenApiParameter("to", OpenApiTypes.STR, description="AAAA-MM-DD (inclusive) o fecha-hora ISO 8601"),
]


class KpiApi(APIView):
    """Response-time KPIs of the caller's centre, from hourly rollups (default) or exact from the rows."""

    permission_classes = [IsSupervisor]

    class KpiInput(RangeInput):
        group_by = serializers.ChoiceField(choices=ROLLUP_GROUPINGS, required=False, allow_blank=True)
        exact = serializers.BooleanField(required=False, default=False)

        def validate(self, attrs):
            result = super().validate(attrs)
            result["group_by"] = attrs.get("group_by") or None
            result["exact"] = attrs.get("exact", False)
            return result

    @extend_schema(
        operation_id="kpis_retrieve",
        parameters=[
            *_RANGE_PARAMS,
            OpenApiParameter("group_by", OpenApiTypes.STR, enum=list(ROLLUP_GROUPINGS)),
            OpenApiParameter("exact", OpenApiTypes.BOOL),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        data = self.KpiInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        params = data.validated_data
        compute = exact_kpis if params["exact"] else rollup_kpis
        scope = {"center_id": request.user.center_id, "start": params["start"], "end": params["end"]}
        with replica_reads():
            totals = compute(**scope)
            groups = compute(**scope, group_by=params["group_by"]) if params["group_by"] else totals
        return Response(
            {
                "from": params["start"].isoformat(),
                "to": params["end"].isoformat(),
                "group_by": params["group_by"],
                "source": "exact" if params["exact"] else "rollup",
                "rollups": rollup_status(),
                "targets": {key: {**t, "label": str(t["label"])} for key, t in kpi_targets().items()},
                "total": totals[0] if totals else None,
                "groups": groups,
            }
        )


def _on_replica(rows: Iterator[list], zone) -> Iterator[list]:
    """An export's rows with their reads routed to the replica, and their times written in `zone`: the rows
    are read while streaming, after the request's middleware (which activated the zone) has returned."""
    with replica_reads(), timezone.override(zone):
        yield from rows


def _csv_response(rows, filename: str) -> StreamingHttpResponse:
    zone = timezone.get_current_timezone()  # the user's centre's (cad.middleware, accounts.auth)
    response = StreamingHttpResponse(
        csv_stream(_on_replica(rows, zone)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class IncidentExportApi(APIView):
    """Every incident opened in the range with all its intervals (CSV, America/Mexico_City times)."""

    permission_classes = [IsSupervisor]

    @extend_schema(
        operation_id="exports_incidents_csv",
        parameters=_RANGE_PARAMS,
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        data = RangeInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        start, end = data.validated_data["start"], data.validated_data["end"]
        rows = incident_export_rows(center_id=request.user.center_id, start=start, end=end)
        stamp = f"{timezone.localtime(start):%Y%m%d}-{timezone.localtime(end):%Y%m%d}"
        return _csv_response(rows, f"incidentes-{stamp}.csv")


class MonthlyExportApi(APIView):
    """Monthly summary by CNIE type and line (CSV), computed exactly from the rows."""

    permission_classes = [IsSupervisor]

    class MonthInput(serializers.Serializer):
        month = serializers.CharField()

        def validate_month(self, value):
            match = re.fullmatch(r"(\d{4})-(\d{2})", value.strip())
            if not match or not 1 <= int(match[2]) <= 12 or not 2000 <= int(match[1]) <= 2999:
                raise serializers.ValidationError(_("Mes inválido; use AAAA-MM, p. ej. 2026-11."))
            return date(int(match[1]), int(match[2]), 1)

    @extend_schema(
        operation_id="exports_monthly_csv",
        parameters=[OpenApiParameter("month", OpenApiTypes.STR, required=True, description="AAAA-MM")],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        data = self.MonthInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        first = data.validated_data["month"]
        following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
        start = timezone.make_aware(datetime.combine(first, time.min))
        end = timezone.make_aware(datetime.combine(following, time.min))
        rows = monthly_summary_rows(center_id=request.user.center_id, start=start, end=end)
        return _csv_response(rows, f"resumen-{first:%Y-%m}.csv")


class MapSnapshotApi(APIView):
    """Everything the supervisor map draws at load (then kept current over the websocket)."""

    permission_classes = [IsSupervisor]

    @extend_schema(operation_id="dashboard_map", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(map_snapshot(center_id=request.user.center_id))


class BoundariesApi(APIView):
    """Loaded INEGI boundaries as one simplified GeoJSON FeatureCollection (the map's vector base layer)."""

    permission_classes = [IsSupervisor]

    @extend_schema(operation_id="dashboard_boundaries", responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response(boundaries_geojson())
