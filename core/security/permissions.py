"""Who may do what with customers."""

from __future__ import annotations

from rest_framework.permissions import BasePermission, DjangoModelPermissions

from core.models import AppUser

#: What reading a customer's history and personal data needs, and erasing
#: them: the API's (core.api.history_views) and the admin's alike.
READ_HISTORY = ("core.view_appuser", "core.view_history")
ERASE = ("core.erase_appuser",)

#: What a view without a queryset is judged against: only its model is read,
#: so it is made once (a QuerySet per request was 6% of a first page's CPU).
CUSTOMERS = AppUser.objects.none()


class CustomerPermissions(DjangoModelPermissions):
    """Model permissions on customers, reads included.

    DRF's ``DjangoModelPermissions`` lets any authenticated user read; this
    API serves personal data, so reading needs ``core.view_appuser`` too.
    Views without a queryset of their own (the list builds its query in a
    selector) are judged against ``AppUser``.
    """

    perms_map = {
        **DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
    }

    def _queryset(self, view):
        if getattr(view, "queryset", None) is None and not hasattr(view, "get_queryset"):
            return CUSTOMERS
        return super()._queryset(view)


def requiring(*permissions: str) -> type[BasePermission]:
    """A permission class that lets through a user holding every one of
    ``permissions`` (``core.view_history``): for the views whose right is not
    a model's add, change, view or delete (a person's history, their erasure)."""

    class Requiring(BasePermission):
        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and user.has_perms(permissions))

    Requiring.__name__ = Requiring.__qualname__ = "Requiring_" + "_".join(
        p.split(".")[-1] for p in permissions
    )
    return Requiring
