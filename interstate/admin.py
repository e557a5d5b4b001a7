"""Admin for peers (secrets write-only: "••••", rotate action, enable/disable), policies, and read-only views
of escalations, the outbox and the audit."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from cad.admin import ReadOnlyAdmin
from cad.errors import DomainError
from interstate import services
from interstate.models import (
    AutoEscalationPolicy,
    Escalation,
    OutboxMessage,
    Peer,
    PeerRequestLog,
    VehicleAlert,
)

MASK = "••••"


class PeerForm(forms.ModelForm):
    """Secrets are typed in, never shown: an empty field keeps the stored one."""

    base_url = forms.URLField(label=gettext_lazy("URL base"), assume_scheme="https")
    outbound_secret = forms.CharField(
        label=gettext_lazy("secreto de envío"),
        required=False,
        widget=forms.PasswordInput(
            render_value=False, attrs={"placeholder": MASK, "autocomplete": "new-password"}
        ),
        help_text=gettext_lazy("El que el centro par nos emitió. Vacío: se conserva el guardado."),
    )

    class Meta:
        model = Peer
        fields = [
            "code",
            "kind",
            "name",
            "base_url",
            "contact_desk",
            "enabled",
            "border_km",
            "service_area",
            "outbound_key_id",
        ]

    def clean_service_area(self):
        area = self.cleaned_data.get("service_area")
        try:
            services.service_area_fields(area)
        except DomainError as exc:
            raise forms.ValidationError(str(exc.message)) from None
        return area


@admin.register(Peer)
class PeerAdmin(admin.ModelAdmin):
    form = PeerForm
    list_display = ("code", "name", "kind", "enabled", "base_url", "unavailable_since", "refreshed_at")
    list_filter = ("enabled", "kind")
    search_fields = ("code", "name")
    readonly_fields = ("inbound_key_id", "inbound_secret_display", "refreshed_at", "unavailable_since")
    actions = ["enable", "disable", "rotate_inbound_secret"]

    @admin.display(description=gettext_lazy("secreto de recepción"))
    def inbound_secret_display(self, obj):
        return MASK

    def has_add_permission(self, request):
        return (
            False  # registration generates and shows the inbound secret once: manage.py interstate_peer add
        )

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "code") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        for field, value in services.service_area_fields(obj.service_area).items():
            setattr(obj, field, value)
        obj.save()
        secret = form.cleaned_data.get("outbound_secret")
        if secret:
            services.peer_set_outbound_credentials(code=obj.code, key_id=obj.outbound_key_id, secret=secret)

    @admin.action(description=gettext_lazy("Habilitar"))
    def enable(self, request, queryset):
        for peer in queryset:
            services.peer_set_enabled(code=peer.code, enabled=True)

    @admin.action(description=gettext_lazy("Deshabilitar (corta el acceso y pausa los envíos)"))
    def disable(self, request, queryset):
        for peer in queryset:
            services.peer_set_enabled(code=peer.code, enabled=False)

    @admin.action(description=gettext_lazy("Rotar el secreto de recepción (se muestra una sola vez)"))
    def rotate_inbound_secret(self, request, queryset):
        for peer in queryset:
            key_id, secret = services.peer_rotate_inbound_secret(code=peer.code)
            self.message_user(
                request,
                _(
                    "%(code)s: clave %(key)s, secreto %(secret)s — entréguelos al centro par; no se volverán a mostrar."
                )
                % {"code": peer.code, "key": key_id, "secret": secret},
                messages.WARNING,
            )


@admin.register(AutoEscalationPolicy)
class AutoEscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ("type_prefix", "peer", "kind", "enabled")
    list_filter = ("enabled", "kind", "peer")


@admin.register(Escalation)
class EscalationAdmin(ReadOnlyAdmin):
    list_display = ("incident", "peer", "direction", "kind", "state", "remote_folio", "updated_at")
    list_filter = ("state", "direction", "kind", "peer")
    search_fields = ("incident__folio", "remote_folio", "request_id")


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "peer", "kind", "seq", "state", "attempts", "created_at", "delivered_at")
    list_filter = ("state", "kind", "peer")
    exclude = ("body",)  # EIDOs may carry 911 callers' data: not browsed here

    def get_readonly_fields(self, request, obj=None):
        return [name for name in super().get_readonly_fields(request, obj) if name not in self.exclude]


@admin.register(VehicleAlert)
class VehicleAlertAdmin(ReadOnlyAdmin):
    list_display = ("plate", "list_kind", "state", "valid_until", "peers", "updated_at")
    list_filter = ("state", "list_kind")
    search_fields = ("plate", "alert_id", "source_key")


@admin.register(PeerRequestLog)
class PeerRequestLogAdmin(ReadOnlyAdmin):
    list_display = (
        "at_seconds",
        "direction",
        "peer_code",
        "method",
        "action",
        "incident_folio",
        "status_code",
        "result",
    )
    list_filter = ("direction", "result", "action")
    search_fields = ("peer_code", "incident_folio", "request_id")

    @admin.display(description=gettext_lazy("hora"), ordering="at")
    def at_seconds(self, entry: PeerRequestLog) -> str:
        """To the second, in the centre's time: a dozen requests often share a minute."""
        return date_format(timezone.localtime(entry.at), "d/m/Y H:i:s")
