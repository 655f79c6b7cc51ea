"""API users: who may call the API, with which tokens and which permissions."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from core.models import Address, ApiToken, AppUser, CustomerRelationship

#: The models whose permissions an API user is given.
CUSTOMER_MODELS = (AppUser, Address, CustomerRelationship)

#: Rights granted apart from a model's: reading a person's history (and all
#: data held about them), erasing them, and changing many customers at once.
GRANTED_APART = ("view_history", "erase_appuser", "bulk_change_appuser")


def token_digest(token: str) -> str:
    """What the database keeps of a token (see :class:`core.models.ApiToken`)."""
    return hashlib.sha256(token.encode()).hexdigest()


def api_user_create(
    *,
    username: str,
    read_only: bool,
    rotate: bool = False,
    lifetime: dt.timedelta | None = None,
    granted: tuple[str, ...] = (),
) -> str:
    """Create or update an API user with permissions on customers; issue a
    new token and return it (the one time its text exists).

    Read-only users get the view permissions; the others also add, change and
    delete. The user has no password (it signs in with a token only) and is
    not staff. The user's earlier tokens keep working unless ``rotate``, which
    revokes them. The token expires after ``lifetime``, by default
    ``CRM_TOKEN_LIFETIME_DAYS`` (0: never). ``granted``: which of
    :data:`GRANTED_APART` the user holds too.
    """
    actions = ["view"] if read_only else ["view", "add", "change", "delete"]
    if lifetime is None and settings.CRM_TOKEN_LIFETIME_DAYS:
        lifetime = dt.timedelta(days=settings.CRM_TOKEN_LIFETIME_DAYS)
    token = secrets.token_hex(20)
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
            ]
            + [codename for codename in granted if codename in GRANTED_APART],
        )
        user.user_permissions.set(permissions)
        if rotate:
            user.api_tokens.all().delete()
        ApiToken.objects.create(
            digest=token_digest(token),
            user=user,
            expires=timezone.now() + lifetime if lifetime else None,
        )
    return token
