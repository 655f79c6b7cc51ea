"""Token authentication against hashed tokens, costing no query on most requests."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, router
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core.models import ApiToken

from .api_users import token_digest

logger = logging.getLogger(__name__)


class CachedTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <token>``, looked up by the token's digest
    (:class:`core.models.ApiToken`) and remembered for ``CRM_TOKEN_CACHE_SECONDS``.

    Per request, a lookup costs one query and the permission check loads the
    user's permissions (two more): three queries, about half a millisecond,
    before the list's own. Here the user, with its permissions loaded, is kept
    in the cache under the digest, so a deleted or rotated token, or a removed
    permission, takes effect within that many seconds; an expired token is
    refused at once (its expiry is cached with it).

    While the primary cannot answer (a failover: tokens are read where they
    are written), a token whose cache time ran out is still taken for up to
    :attr:`OUTAGE_GRACE_SECONDS` more, as it was last read: otherwise every
    process would stop serving reads from the standbys during a failover as
    its users' cache entries expired, one by one.
    """

    #: How long past its cache time a token's last reading stands in while
    #: the primary cannot be read (longer than a failover, see docs/scaling.md).
    OUTAGE_GRACE_SECONDS = 120

    @staticmethod
    def cache_key(digest: str) -> str:
        return "crm:token:" + digest

    def authenticate_credentials(self, key: str):
        digest = token_digest(key)
        seconds = settings.CRM_TOKEN_CACHE_SECONDS
        cache_key = self.cache_key(digest)
        cached = cache_get(cache_key) if seconds else None
        if cached is None or time.time() - cached[2] >= seconds:
            try:
                token = (
                    # Where tokens are written (the primary): one created a moment
                    # ago must work at once, whatever replica the reads go to.
                    ApiToken.objects.db_manager(router.db_for_write(ApiToken))
                    .select_related("user")
                    .filter(digest=digest)
                    .first()
                )
            except DatabaseError:
                if cached is None:
                    raise
                logger.warning("token read from the cache: the primary did not answer")
                token = cached[1]
            else:
                if token is None:
                    raise AuthenticationFailed("Invalid token.")
                token.user.get_all_permissions()  # loads them into the user's own caches
                cached = (token.user, token, time.time())
                if seconds:
                    cache_set(cache_key, cached, seconds + self.OUTAGE_GRACE_SECONDS)
        user, token = cached[0], cached[1]
        if token.expires is not None and token.expires <= timezone.now():
            raise AuthenticationFailed("Token expired; ask for a new one.")
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return user, token


def cache_get(key: str):
    """The cached value, or None when the cache (Redis) cannot be reached: a
    cache that is down costs a lookup per request, never a request."""
    try:
        return cache.get(key)
    except Exception as exc:
        logger.warning("token cache unavailable: %s", exc)
        return None


def cache_set(key: str, value, seconds: int) -> None:
    try:
        cache.set(key, value, seconds)
    except Exception as exc:
        logger.warning("token cache unavailable: %s", exc)
