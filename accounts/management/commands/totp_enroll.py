from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import Role, User

SECOND_FACTOR_ROLES = (Role.SUPERVISOR, Role.ADMINISTRATOR)


class Command(BaseCommand):
    help = (
        "Enrol a supervisor or administrator in TOTP (second factor at login). Prints the otpauth:// URI "
        "once, to load into an authenticator app (as a QR code or by hand); --remove drops the device."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--remove", action="store_true")

    def handle(self, *args, username, remove, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No existe el usuario {username}.")
        TOTPDevice.objects.filter(user=user).delete()
        if remove:
            self.stdout.write(f"{username}: segundo factor retirado.")
            return
        if user.role not in SECOND_FACTOR_ROLES and not user.is_superuser:
            raise CommandError("El segundo factor TOTP es para supervisores y administradores.")
        device = TOTPDevice.objects.create(user=user, name="totp", confirmed=True)
        self.stdout.write(device.config_url)
