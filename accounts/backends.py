"""Django's ModelBackend, with the user's centre read in the same query as the user.

Every session request reads the user (AuthenticationMiddleware) and then, nearly always, its centre (the
time zone middleware, every centre-scoped view and service): one join instead of two queries per request.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class CenterModelBackend(ModelBackend):
    def get_user(self, user_id):
        user = get_user_model()._default_manager.select_related("center").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
