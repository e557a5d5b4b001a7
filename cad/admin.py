from django.contrib import admin

from cad.models import Center, Event, EventStream


class EventStreamInline(admin.TabularInline):
    model = EventStream
    fields = ("name", "last_seq")
    readonly_fields = ("last_seq",)
    extra = 0


@admin.register(Center)
class CenterAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "cve_ent", "timezone")
    search_fields = ("code", "name")
    inlines = [EventStreamInline]


class CenterScopedAdmin(admin.ModelAdmin):
    """Rows of the staff user's own centre only (a superuser of one centre must not read another's 9-1-1
    data); staff without a centre (a platform operator) see every centre. `center_field` is the lookup
    from the model to its centre."""

    center_field = "center"

    def get_queryset(self, request):
        rows = super().get_queryset(request)
        center_id = getattr(request.user, "center_id", None)
        return rows.filter(**{f"{self.center_field}_id": center_id}) if center_id else rows


class ReadOnlyAdmin(admin.ModelAdmin):
    """For logs and system-written rows: readable in the admin, never added, edited or deleted there."""

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(CenterScopedAdmin, ReadOnlyAdmin):
    """The domain-event log is append-only: readable here, never edited."""

    list_display = ("created_at", "center", "stream", "seq", "type")
    list_filter = ("center", "stream", "type")
    search_fields = ("type", "uid")
    date_hierarchy = "created_at"
