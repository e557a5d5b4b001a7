"""Close console sockets when their session ends: logout (that session's sockets), deactivation, a new role
or centre, or a new password (every socket of the user). Consoles also re-check their session periodically,
so a lost message only delays the close."""

from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from accounts.models import User
from cad.events import end_sessions

WATCHED = ("is_active", "role", "center_id", "password")


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None and request.session.session_key:
        end_sessions(user_id=user.pk, session_key=request.session.session_key)


@receiver(pre_save, sender=User)
def _remember_access(sender, instance: User, update_fields=None, **kwargs):
    if not instance.pk or (
        update_fields is not None
        and not {*update_fields} & {"is_active", "role", "center", "center_id", "password"}
    ):
        instance._access_before = None  # new user, or e.g. only last_login changes
        return
    instance._access_before = User.objects.filter(pk=instance.pk).values_list(*WATCHED).first()


@receiver(post_save, sender=User)
def _access_changed(sender, instance: User, created: bool, **kwargs):
    before = getattr(instance, "_access_before", None)
    if before is not None and before != tuple(getattr(instance, field) for field in WATCHED):
        end_sessions(user_id=instance.pk)
