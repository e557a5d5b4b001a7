"""Django's ModelBackend, with the user's centre read in the same statement as the user.

Every session request reads the user (AuthenticationMiddleware) and then, nearly always, its centre (the
time zone middleware, every centre-scoped view and service): one hand-written join (cad.db.RowShape: the
ORM's query building cost more than the statement) instead of two queries per request.
"""

from django.contrib.auth.backends import ModelBackend

from accounts.models import User
from cad.db import RowShape
from cad.models import Center

_USER = RowShape((User, ()), (Center, ()))
_USER_SQL = (
    f"SELECT {_USER.columns('u', 0)}, {_USER.columns('c', 1)} FROM accounts_user u"  # noqa: S608 - model columns
    " LEFT JOIN cad_center c ON c.id = u.center_id WHERE u.id = %s"
)


class CenterModelBackend(ModelBackend):
    def get_user(self, user_id):
        try:
            found = _USER.one(_USER_SQL, [int(user_id)])
        except (TypeError, ValueError):
            return None
        if found is None:
            return None
        user, center = found
        user.center = center
        return user if self.user_can_authenticate(user) else None
