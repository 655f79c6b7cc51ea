"""API users: who may call the API, with which token and which permissions."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from rest_framework.authtoken.models import Token

from core.models import Address, AppUser, CustomerRelationship

#: The models whose permissions an API user is given.
CUSTOMER_MODELS = (AppUser, Address, CustomerRelationship)


def api_user_create(*, username: str, read_only: bool) -> str:
    """Create or update an API user with permissions on customers; return its token.

    Read-only users get the view permissions; the others also add, change and
    delete. The user has no password (it signs in with the token only) and is
    not staff.
    """
    actions = ["view"] if read_only else ["view", "add", "change", "delete"]
    with transaction.atomic():
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save()
        permissions = Permission.objects.filter(
            content_type__in=ContentType.objects.get_for_models(*CUSTOMER_MODELS).values(),
            codename__in=[
                f"{action}_{model._meta.model_name}"
                for action in actions
                for model in CUSTOMER_MODELS
            ],
        )
        user.user_permissions.set(permissions)
        token, _ = Token.objects.get_or_create(user=user)
    return token.key
