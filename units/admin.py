from django.contrib import admin

from cad.admin import CenterScopedAdmin
from units.models import Agency, Capability, Station, Unit


@admin.register(Agency)
class AgencyAdmin(CenterScopedAdmin):
    list_display = ("code", "name", "kind", "speed_kmh", "center")
    list_filter = ("center", "kind")
    search_fields = ("code", "name")


@admin.register(Capability)
class CapabilityAdmin(admin.ModelAdmin):
    list_display = ("code", "name")
    search_fields = ("code", "name")


@admin.register(Station)
class StationAdmin(CenterScopedAdmin):
    center_field = "agency__center"

    list_display = ("name", "agency", "lat", "lon")
    list_filter = ("agency",)
    search_fields = ("name",)
    list_select_related = ("agency",)


@admin.register(Unit)
class UnitAdmin(CenterScopedAdmin):
    """Status and position change only through the services (status history, events, AVL)."""

    list_display = ("callsign", "agency", "station", "status", "status_changed_at", "position_at")
    list_filter = ("agency", "status", "center")
    search_fields = ("callsign",)
    list_select_related = ("agency", "station")
    filter_horizontal = ("capabilities",)
    readonly_fields = ("status", "status_changed_at", "lat", "lon", "position_at", "version", "center")
