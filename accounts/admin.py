from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _
from knox.models import AuthToken

from accounts.models import User
from accounts.tokens import PREFIX_SHOWN
from cad.admin import CenterScopedAdmin, ReadOnlyAdmin


@admin.register(User)
class UserAdmin(CenterScopedAdmin, BaseUserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "center", "is_active", "is_staff")
    list_filter = ("role", "center", "is_active", "is_staff")
    fieldsets = (*BaseUserAdmin.fieldsets, (_("Centro de mando"), {"fields": ("role", "center")}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, (_("Centro de mando"), {"fields": ("role", "center")}))


admin.site.unregister(
    AuthToken
)  # knox's admin lists every centre's tokens and can add one without showing it


@admin.register(AuthToken)
class ServiceTokenAdmin(CenterScopedAdmin, ReadOnlyAdmin):
    """Tokens of the staff user's centre, read-only: who, first characters, issued, expiry. Never the secret
    (only a digest is stored); `manage.py service_token` issues, rotates and revokes them."""

    center_field = "user__center"
    list_display = ("user", "prefix", "created", "expiry")
    list_filter = ("user__role",)
    search_fields = ("user__username",)
    fields = ("user", "prefix", "created", "expiry")
    ordering = ("user__username", "-created")

    @admin.display(description=_("prefijo"))
    def prefix(self, obj):
        return f"{obj.token_key[:PREFIX_SHOWN]}…"

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")
