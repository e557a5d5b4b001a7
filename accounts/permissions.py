"""The permission matrix: each role sees and does only what its job needs.

| capability                       | call_taker | dispatcher | supervisor | administrator | device | peer |
|----------------------------------|:----------:|:----------:|:----------:|:-------------:|:------:|:----:|
| read incidents, types, units     |     x      |     x      |     x      |       x       |        |      |
| take calls, add notes            |     x      |     x      |     x      |       x       |        |      |
| recommend, assign, unit status,  |            |     x      |     x      |       x       |        |      |
|   close incidents                |            |            |            |               |        |      |
| KPIs, exports                    |            |            |     x      |       x       |        |      |
| AVL positions                    |            |            |            |       x       |   x    |      |
| interstate endpoints             |            |            |            |               |        |  x   |

089 tips (app `tips`): contents, follow-up and call-back look-ups only for the 089 role (`tips_089`) and
supervisors — not administrators, not call-takers or dispatchers. Panic buttons and LPR devices post
with the device role; hotlists are managed by supervisors and administrators.
"""

from rest_framework.permissions import BasePermission

from accounts.models import Role

CONSOLE_ROLES = (Role.CALL_TAKER, Role.DISPATCHER, Role.SUPERVISOR, Role.ADMINISTRATOR)
DISPATCH_ROLES = (Role.DISPATCHER, Role.SUPERVISOR, Role.ADMINISTRATOR)
SUPERVISION_ROLES = (Role.SUPERVISOR, Role.ADMINISTRATOR)
AVL_ROLES = DEVICE_ROLES = (Role.DEVICE, Role.ADMINISTRATOR)
PEER_ROLES = (Role.PEER,)
TIPS_ROLES = (Role.TIPS_089, Role.SUPERVISOR)


def _role_permission(name: str, roles: tuple) -> type[BasePermission]:
    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_role(*roles) and user.center_id)

    return type(name, (BasePermission,), {"has_permission": has_permission, "roles": roles})


IsConsoleUser = _role_permission("IsConsoleUser", CONSOLE_ROLES)
IsDispatcher = _role_permission("IsDispatcher", DISPATCH_ROLES)
IsSupervisor = _role_permission("IsSupervisor", SUPERVISION_ROLES)
IsAvlDevice = _role_permission("IsAvlDevice", AVL_ROLES)
IsDevice = _role_permission("IsDevice", DEVICE_ROLES)  # panic buttons and plate readers
IsPeer = _role_permission("IsPeer", PEER_ROLES)
IsTipsUser = _role_permission("IsTipsUser", TIPS_ROLES)
