"""The CRM's three tables: customers, their addresses and their loyalty records.

Every index is named and says which query it serves. The list API's queries
are built in :mod:`core.customers`; an index that no query there uses should
not exist, because each one costs time on every write and on every bulk load.

Two families of index serve the list API:

* ``(sort column, id)`` b-trees: one per sortable column. The API's keyset
  pagination seeks on exactly these columns, so page 50,000 costs what page 1
  costs. The same indexes serve range and equality filters, and hand the
  list's membership tests their sets without reading a table (see
  :mod:`core.customers.selectors`).
* a trigram GIN index on ``UPPER(phone_number)`` for its substring filter:
  phone numbers are nearly all distinct. Django compiles ``icontains`` to
  ``UPPER(col::text) LIKE UPPER(%s)``, so an index on the bare column would
  never be used; the index is on the expression the query really contains.
  Cities, countries and names have a few thousand distinct values each:
  their substring filters look the values up among those (the cities'
  b-tree, the names' SearchTerm) and read the customers by equality from
  the b-trees (see :class:`core.customers.filters.DistinctSubstring`).
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import Value
from django.db.models.functions import Coalesce, Upper
from django.utils import timezone

#: Stands in for a missing birthday where customers are ordered by birthday.
NO_BIRTHDAY = dt.date(9999, 12, 31)


def trigram_index(column: str, name: str) -> GinIndex:
    """A GIN index for case-insensitive substring search on ``column``.

    It indexes ``UPPER(column)`` because that is the expression Django's
    ``icontains`` lookup produces (``UPPER(col::text) LIKE UPPER('%smith%')``).
    """
    return GinIndex(OpClass(Upper(column), name="gin_trgm_ops"), name=name)


class Address(models.Model):
    street = models.CharField(max_length=255)
    street_number = models.CharField(max_length=50)
    city_code = models.CharField(max_length=20)
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=100)

    class Meta:
        verbose_name_plural = "addresses"
        indexes = [
            # ?city_code=1010 (exact). With id, a code's addresses come from
            # the index alone: the membership set of a walk (see
            # core.customers.selectors.HashedIn) and a count.
            models.Index(fields=["city_code", "id"], name="address_city_code_id"),
            # ?ordering=address__city and its keyset seek; id breaks ties
            # between the many addresses of one city. Also ?city=: the filter
            # looks the matching names up among the distinct cities (a loose
            # scan of this index), then reads their addresses from it.
            models.Index(fields=["city", "id"], name="address_city_id"),
            # ?ordering=address__country (a country's addresses by city) and
            # ?ordering=address__country,address__city, their keyset seek;
            # ?country= as ?city= does.
            models.Index(fields=["country", "city", "id"], name="address_country_id"),
        ]

    def __str__(self) -> str:
        return f"{self.street} {self.street_number}, {self.city_code} {self.city}, {self.country}"


class AppUser(models.Model):
    """A customer."""

    class Gender(models.TextChoices):
        MALE = "m", "Male"
        FEMALE = "f", "Female"
        OTHER = "o", "Other"

    first_name = models.CharField(max_length=64)
    last_name = models.CharField(max_length=64)
    gender = models.CharField(max_length=1, choices=Gender.choices)
    customer_id = models.CharField(max_length=64)
    phone_number = models.CharField(max_length=32)
    birthday = models.DateField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)
    # The FK's index is declared below (address_users) so that it has a name
    # and a reason like every other index.
    address = models.ForeignKey(
        Address, on_delete=models.PROTECT, related_name="users", db_index=False
    )

    class Meta:
        verbose_name = "customer"
        constraints = [
            # ?customer_id=... (exact) and ?ordering=customer_id. Being unique,
            # customer_id needs no id tie-breaker, and an equality match
            # returns at most one row: the original's (customer_id, created
            # DESC) index would have nothing left to sort.
            models.UniqueConstraint(fields=["customer_id"], name="appuser_customer_id_key"),
            # A customer is updated at the earliest when created (auto_now and
            # auto_now_add stamp them in that order). The list relies on it:
            # ?created_from=X ordered by last_updated walks last_updated's
            # index from X, not from the first customer ever updated
            # (core.customers.selectors.IMPLIED_STARTS).
            models.CheckConstraint(
                condition=models.Q(last_updated__gte=models.F("created")),
                name="appuser_updated_since_created",
            ),
        ]
        indexes = [
            # ?phone_number= substring filter. ANALYZE also keeps statistics
            # on the indexed expression, which estimate a substring without
            # a trigram (core.customers.selectors.table_estimates).
            trigram_index("phone_number", "appuser_phone_number_trgm"),
            # ?ordering=<column> for each sortable column, and the keyset
            # seek "(column, id) > (last seen)" of cursor pagination. gender
            # and phone_number are not sortable: nobody pages through
            # customers by a three-valued column or by phone number, and each
            # of these indexes costs about two seconds of every 3M-row load.
            #
            # Each carries the customer's address_id (INCLUDE: stored, not
            # sorted): a walk of the index tests an address filter by
            # membership (core.customers.selectors.HashedIn) without reading
            # the customer's row, and a range filter on the column yields its
            # customers' (id, address_id) from the index alone.
            #
            # A name's ties (one in a hundred is a Smith) are ordered by the
            # other name: ?ordering=last_name,first_name is then this very
            # index (see core.customers.ordering.SortField.then).
            models.Index(
                fields=["first_name", "last_name", "id"],
                include=["address"],
                name="appuser_first_name_id",
            ),
            models.Index(
                fields=["last_name", "first_name", "id"],
                include=["address"],
                name="appuser_last_name_id",
            ),
            # birthday is nullable: ?ordering=birthday sorts the customers
            # without one last by ordering on this expression (a NULL would
            # make the keyset's row comparison unknown), and the index is on
            # exactly that expression. Also serves ?birthday_from=&birthday_to=.
            # PostgreSQL reads an expression index without the table only if
            # the columns in the expression are stored too: hence birthday.
            models.Index(
                Coalesce("birthday", Value(NO_BIRTHDAY)),
                "id",
                include=["birthday", "address"],
                name="appuser_birthday_id",
            ),
            # Also serves ?created_from=&created_to= range filters.
            models.Index(fields=["created", "id"], include=["address"], name="appuser_created_id"),
            models.Index(
                fields=["last_updated", "id"], include=["address"], name="appuser_last_updated_id"
            ),
            # Joins from an address to its customers, PROTECT checks on
            # address deletion, and the (address_id, id) tie-break of
            # ?ordering=address__city.
            models.Index(fields=["address", "id"], name="appuser_address_id"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.customer_id})"


class LastActivityField(models.DateTimeField):
    """A loyalty record's last activity, which can never precede the record's creation.

    A new record's default last activity (``timezone.now`` when the instance
    is built) comes before ``created``, which ``auto_now_add`` stamps when
    the record is saved: it used to be saved microseconds earlier (seconds in
    the admin, whose form carries the time the page was shown). On every
    save, a value before ``created`` becomes ``created``: a new record's last
    activity is its creation, to the microsecond, and a client's clock that
    lags the server's (the API tolerates a minute) cannot break the rule
    either. Fields are saved in their declared order, so ``created`` is set
    when this runs; every path that saves a model (the API's services, the
    admin, ``bulk_create``) goes through here.
    """

    def pre_save(self, model_instance: models.Model, add: bool):
        value = super().pre_save(model_instance, add)
        # Not getattr: a deferred ``created`` is not worth a query here.
        created = model_instance.__dict__.get("created")
        if value is not None and created is not None and value < created:
            value = created
            setattr(model_instance, self.attname, value)
        return value


class CustomerRelationship(models.Model):
    """A customer's loyalty record."""

    # The customer's id is the record's primary key: one index fewer than a
    # surrogate id plus a unique appuser_id (that is a second to build per
    # 3M-row load), and the join to the customer is a primary-key lookup.
    appuser = models.OneToOneField(
        AppUser, on_delete=models.CASCADE, related_name="relationship", primary_key=True
    )
    points = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    last_activity = LastActivityField(default=timezone.now)

    class Meta:
        constraints = [
            # A record's last activity is its creation at the earliest
            # (LastActivityField keeps it so for every save); and a record
            # is created after its customer (the trigger
            # relationship_created_after_customer, migration 0010). Together:
            # ?created_from=X ordered by relationship__last_activity walks
            # the activity index from X (core.customers.selectors.IMPLIED_STARTS).
            models.CheckConstraint(
                condition=models.Q(last_activity__gte=models.F("created")),
                name="relationship_active_since_created",
            ),
        ]
        indexes = [
            # ?ordering=-relationship__points: the list query inner-joins this
            # table, so a backward scan of this index yields the page in
            # order; appuser_id (the customer's id) breaks the many ties.
            # Also serves ?points_min=&points_max=.
            models.Index(fields=["points", "appuser"], name="relationship_points_user"),
            # ?ordering=relationship__last_activity and ?last_activity_from/to.
            models.Index(fields=["last_activity", "appuser"], name="relationship_activity_user"),
        ]

    def __str__(self) -> str:
        return f"{self.appuser_id}: {self.points} points"


class ThrottleWindow(models.Model):
    """Request counters of the API's rate limits (see core.security.throttling).

    UNLOGGED (set by its migration): counters need no crash safety and so no WAL.
    """

    key = models.CharField(max_length=200, primary_key=True)
    window_start = models.DateTimeField()
    hits = models.IntegerField()

    class Meta:
        db_table = "core_throttle_window"

    def __str__(self) -> str:
        return f"{self.key}: {self.hits} since {self.window_start:%H:%M:%S}"


class SearchTerm(models.Model):
    """The distinct first and last names, for typo-tolerant search.

    ``?search=jon`` must find every name trigram-similar to "jon". Asked of
    3M customers, pg_trgm's index returns every row that shares a trigram with
    "jon" (all the Johns, Jonathans, Joneses: hundreds of thousands) and
    rechecks each; asked of the ~15,000 distinct names, it answers in a
    millisecond, and the customers with those names come from the
    ``(first_name, id)`` and ``(last_name, id)`` b-trees. The name filters
    (``?last_name=sm``) look their substring up here the same way.

    It holds every name a customer has: the trigger ``appuser_names_known``
    (migration 0008) adds the names of every customer written, whoever
    writes it (the API, the admin, the ORM, SQL), and generate_data rebuilds
    the table in its loading transaction. A name nobody has any more stays
    and matches nobody.
    """

    field = models.CharField(max_length=16)  # "first_name" or "last_name"
    value = models.CharField(max_length=64)

    class Meta:
        constraints = [
            # Adding a name that is already known is a no-op (ON CONFLICT).
            models.UniqueConstraint(fields=["field", "value"], name="search_term_key"),
        ]
        indexes = [
            # The similarity search of core.customers.search.similar_names.
            trigram_index("value", "search_term_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.field}: {self.value}"


class ApiToken(models.Model):
    """An API token, stored as the SHA-256 digest of its text.

    Whoever reads the table (a backup, a replica, a leaked dump) learns no
    token that works. A plain digest suffices where a password needs a slow
    hash: a token is 160 random bits, so there is nothing to guess, and the
    lookup stays one primary-key read. A user may hold several tokens (one
    per client, say); ``create_api_user --rotate`` replaces them all.
    """

    digest = models.CharField(max_length=64, primary_key=True)
    # The FK's index is declared below (api_token_user), with its reason.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        db_index=False,
    )
    created = models.DateTimeField(auto_now_add=True)
    #: After this the token is refused; null: it does not expire.
    expires = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API token"
        indexes = [
            # A user's tokens: rotation deletes them, and so does deleting the user.
            models.Index(fields=["user"], name="api_token_user"),
        ]

    def __str__(self) -> str:
        return f"token of {self.user_id}, created {self.created:%Y-%m-%d}"
