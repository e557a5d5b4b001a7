"""Registries of panic buttons, plate readers and hotlists. Hotlist entries are loaded with
`manage.py import_hotlist` or the API (a million rows do not belong in an admin page)."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from sensors.models import Hotlist, LprReader, PanicButton
from sensors.shared import sync_hotlist_sharing

SUPERVISION_FIELDS = ("online", "last_seen_at")


class PanicButtonForm(forms.ModelForm):
    class Meta:
        model = PanicButton
        fields = (
            "center",
            "account",
            "aes_key",
            "name",
            "lat",
            "lon",
            "address",
            "agency",
            "camera_ref",
            "incident_type",
            "heartbeat_s",
            "active",
        )
        widgets = {"aes_key": forms.PasswordInput(render_value=True)}

    def clean_account(self):
        account = self.cleaned_data["account"].upper()
        if not (3 <= len(account) <= 16 and all(c in "0123456789ABCDEF" for c in account)):
            raise forms.ValidationError(_("3 a 16 dígitos hexadecimales."))
        return account

    def clean_aes_key(self):
        key = self.cleaned_data["aes_key"]
        if key and len(key) not in (16, 24, 32):
            raise forms.ValidationError(_("16, 24 o 32 caracteres."))
        return key


@admin.register(PanicButton)
class PanicButtonAdmin(admin.ModelAdmin):
    form = PanicButtonForm
    list_display = ("account", "name", "address", "agency", "online", "last_seen_at", "active")
    list_filter = ("center", "online", "active", "agency")
    search_fields = ("account", "name", "address")
    readonly_fields = SUPERVISION_FIELDS


@admin.register(LprReader)
class LprReaderAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "direction", "road", "online", "last_seen_at", "active")
    list_filter = ("center", "online", "active", "direction")
    search_fields = ("code", "name", "road")
    readonly_fields = SUPERVISION_FIELDS


@admin.register(Hotlist)
class HotlistAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "source", "owner", "shared", "active", "peer", "created_at")
    list_filter = ("center", "kind", "shared", "active", "peer")
    search_fields = ("name", "source")
    readonly_fields = ("peer",)

    def save_model(self, request, obj, form, change):
        """Sharing, unsharing or (de)activating a list publishes or withdraws its entries to the peers."""
        super().save_model(request, obj, form, change)
        if change and {"shared", "active"} & set(form.changed_data) and not obj.peer:
            sync_hotlist_sharing(hotlist_id=obj.pk)
