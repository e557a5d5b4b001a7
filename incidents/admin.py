from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from cad.admin import CenterScopedAdmin
from incidents.models import Call, Incident, IncidentType, Line, SubtypeResponsePlan, TimelineEntry

CALLER_FIELDS = ("caller_name", "callback_number")
CALL_LIFECYCLE_FIELDS = ("arrived_at", "answered_at", "released_at", "disposition", "incident", "center")


@admin.register(IncidentType)
class IncidentTypeAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "tipo_name", "subtipo_name", "priority", "active", "catalogue_edition")
    list_filter = ("tipo_name", "priority", "active", "catalogue_edition")
    search_fields = ("code", "name", "subtipo_name")
    readonly_fields = ("code", "tipo_code", "subtipo_code", "catalogue_edition")
    ordering = ("code",)


@admin.register(SubtypeResponsePlan)
class SubtypeResponsePlanAdmin(admin.ModelAdmin):
    list_display = ("subtipo_code", "subtipo_name", "plan")
    search_fields = ("subtipo_code",)
    ordering = ("subtipo_code",)

    @admin.display(description=_("nombre del subtipo"))
    def subtipo_name(self, obj):
        incident_type = IncidentType.objects.filter(subtipo_code=obj.subtipo_code).first()
        return incident_type.subtipo_name if incident_type else "—"


class TimelineEntryInline(admin.TabularInline):
    model = TimelineEntry
    fields = ("at", "kind", "by", "text")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("at", "id")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Incident)
class IncidentAdmin(CenterScopedAdmin):
    """Read-mostly: incidents are written by the dispatch services, which record events and timeline."""

    list_display = ("folio", "center", "type_code", "type_name", "priority", "status", "opened_at")
    list_filter = ("center", "status", "priority")
    search_fields = ("folio", "type_code", "type_name", "address")
    date_hierarchy = "opened_at"
    list_select_related = ("center",)
    inlines = [TimelineEntryInline]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Call)
class CallAdmin(CenterScopedAdmin):
    """089 is anonymous: the caller's identity is never shown nor captured here. What the dispatch services
    write (times, disposition, the incident) is read-only: the admin would skip their events."""

    list_display = ("uid", "center", "line", "channel", "arrived_at", "disposition", "incident")
    list_filter = ("center", "line", "channel", "disposition")
    search_fields = ("uid", "incident__folio")
    date_hierarchy = "arrived_at"
    list_select_related = ("center", "incident")
    raw_id_fields = ("incident", "incident_type", "call_taker")

    def _hides_caller(self, obj) -> bool:
        return obj is None or obj.line == Line.ANONYMOUS

    def get_exclude(self, request, obj=None):
        exclude = list(super().get_exclude(request, obj) or [])
        if self._hides_caller(obj):
            exclude.extend(CALLER_FIELDS)
        return exclude

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if self._hides_caller(obj):
            fields = [f for f in fields if f not in CALLER_FIELDS]
        return fields

    def get_readonly_fields(self, request, obj=None):
        fields = [*super().get_readonly_fields(request, obj), *CALL_LIFECYCLE_FIELDS]
        if obj is not None:
            fields.append("line")  # changing the line would expose or orphan caller fields
        return fields
