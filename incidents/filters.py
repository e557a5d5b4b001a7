"""Query-string filters of the incident API (django-filter) and the incident-type type-ahead."""

import django_filters
from django.db.models import Prefetch, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from cad.text import fold
from incidents.models import Assignment, Incident, IncidentStatus, IncidentType, Priority
from incidents.selectors import incident_list_for_console


class IncidentFilter(django_filters.FilterSet):
    """`?status=pending&status=dispatched&priority=ALTA&type=101&jurisdiction=15106&open=true`."""

    status = django_filters.MultipleChoiceFilter(choices=IncidentStatus.choices, label=_("estado"))
    priority = django_filters.ChoiceFilter(choices=Priority.choices, label=_("prioridad"))
    type = django_filters.CharFilter(method="filter_type", label=_("clave, subtipo o tipo CNIE"))
    jurisdiction = django_filters.CharFilter(method="filter_jurisdiction", label=_("clave geoestadística"))
    open = django_filters.BooleanFilter(method="filter_open", label=_("solo abiertos"))

    class Meta:
        model = Incident
        fields: list[str] = []

    def filter_type(self, queryset, name, value):
        # A full code (5 digits), a subtipo (3) or a tipo (1): the CNIE code is hierarchical.
        return queryset.filter(type_code__startswith=value.strip())

    def filter_jurisdiction(self, queryset, name, value):
        return queryset.filter(Q(state__cvegeo=value) | Q(municipality__cvegeo=value))

    def filter_open(self, queryset, name, value):
        if value is None:
            return queryset
        if value:
            return queryset.exclude(status=IncidentStatus.CLOSED)
        return queryset.filter(status=IncidentStatus.CLOSED)


def incidents_for_list(*, center_id: int, open_only: bool) -> QuerySet[Incident]:
    """The console queue (open incidents) or the centre's whole history, most urgent first, then oldest."""
    if open_only:
        return incident_list_for_console(center_id=center_id)
    return (
        Incident.objects.filter(center_id=center_id)
        .with_places()
        .prefetch_related(
            Prefetch("assignments", Assignment.objects.filter(active=True).select_related("unit"))
        )
        .order_by("priority_rank", "opened_at")
    )


def incident_type_search(
    *, q: str = "", tipo: str = "", active: bool | None = True, limit: int = 20
) -> list[IncidentType]:
    """Type-ahead over the CNIE catalogue (a few hundred rows): every word of `q` must appear, accent- and
    case-insensitively, in the code, name, tipo or subtipo name. Codes that start with `q` rank first."""
    rows = IncidentType.objects.all()
    if tipo:
        rows = rows.filter(tipo_code=tipo)
    if active is not None:
        rows = rows.filter(active=active)
    words = fold(q).split()
    if not words:
        return list(rows.order_by("code")[:limit])
    found = []
    for incident_type in rows.order_by("code"):
        haystack = fold(
            f"{incident_type.code} {incident_type.name} {incident_type.tipo_name} {incident_type.subtipo_name}"
        )
        if all(word in haystack for word in words):
            starts = incident_type.code.startswith(words[0]) or fold(incident_type.name).startswith(words[0])
            found.append((0 if starts else 1, incident_type.code, incident_type))
    found.sort(key=lambda row: (row[0], row[1]))
    return [row[2] for row in found[:limit]]
