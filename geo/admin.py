from django.contrib import admin

from geo.models import Jurisdiction, Locality


@admin.register(Jurisdiction)
class JurisdictionAdmin(admin.ModelAdmin):
    list_display = ("cvegeo", "name", "kind", "parent", "source", "imported_at")
    list_filter = ("kind", "cve_ent")
    search_fields = ("cvegeo", "name")
    list_select_related = ("parent",)
    readonly_fields = ("min_lat", "min_lon", "max_lat", "max_lon", "imported_at")
    raw_id_fields = ("parent",)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # The list never needs the (large) geometry JSON.
        url_name = getattr(request.resolver_match, "url_name", "") or ""
        return queryset.defer("geometry") if url_name.endswith("changelist") else queryset


@admin.register(Locality)
class LocalityAdmin(admin.ModelAdmin):
    list_display = ("cvegeo", "name", "municipality_name", "state_name", "ambito", "lat", "lon", "source")
    list_filter = ("cve_ent", "ambito")
    search_fields = ("cvegeo", "name", "municipality_name")
    readonly_fields = ("search_text",)
