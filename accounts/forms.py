"""Login forms with a second factor: a user who enrolled a TOTP device (supervisors and administrators,
`manage.py totp_enroll`) must give its current code after the password; everyone else logs in as before.
The same rule guards the admin's own login page."""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _
from django_otp import user_has_device
from django_otp.forms import OTPAuthenticationFormMixin
from django_otp.plugins.otp_totp.models import TOTPDevice


class SecondFactorMixin(OTPAuthenticationFormMixin, forms.Form):
    otp_device = forms.CharField(required=False, widget=forms.HiddenInput)
    otp_token = forms.CharField(
        label=_("Código de verificación"),
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
    otp_challenge = forms.CharField(required=False)

    def _chosen_device(self, user):
        # The page has no device picker: a user has one TOTP device (`totp_enroll` replaces it). Locked like
        # django-otp's own lookup, so concurrent logins cannot reuse one code.
        return (
            super()._chosen_device(user)
            or TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).first()
        )

    def clean(self):
        cleaned = super().clean()  # the password first (and the login throttling)
        user = self.get_user()
        if user is not None and user_has_device(user, confirmed=True):
            self.clean_otp(user)
        return cleaned


class LoginForm(SecondFactorMixin, AuthenticationForm):
    pass


class AdminLoginForm(SecondFactorMixin, AdminAuthenticationForm):
    pass
