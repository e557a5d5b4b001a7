from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from cad.admin import CenterScopedAdmin


@admin.register(User)
class UserAdmin(CenterScopedAdmin, BaseUserAdmin):
    list_display = ("username", "first_name", "last_name", "role", "center", "is_active", "is_staff")
    list_filter = ("role", "center", "is_active", "is_staff")
    fieldsets = (*BaseUserAdmin.fieldsets, (_("Centro de mando"), {"fields": ("role", "center")}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, (_("Centro de mando"), {"fields": ("role", "center")}))
