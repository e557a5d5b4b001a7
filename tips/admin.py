"""Only the list of competent authorities is administered here. Tips themselves are not in the admin:
their contents are for the 089 role and supervisors, through the audited API."""

from django.contrib import admin

from tips.models import Authority


@admin.register(Authority)
class AuthorityAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "center", "due_days", "active")
    list_filter = ("center", "active")
    search_fields = ("code", "name")
