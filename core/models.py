"""The CRM's tables: customers, their addresses and loyalty records, and the list's read table.

The three tables :class:`Address`, :class:`AppUser` (a customer) and
:class:`CustomerRelationship` (their loyalty record) are the system of
record: every write goes there. The list reads none of them. It reads
:class:`CustomerRow`, one row per customer that holds every column the list
filters, sorts, searches, counts and returns, kept equal to the join of the
three by triggers in the same transaction as each write (migration 0011),
whoever writes: the API's services, the admin, the ORM, raw SQL.

Why one table: no index can serve a filter on one table and an ordering on
another, and PostgreSQL's statistics cannot see across a join. With every
column in one row, every sortable field has one ``(field, id)`` b-tree that
serves its ordering, its keyset seek and its range filters, and the list
chooses between walking that index and sorting the matches with one rule
(see :mod:`core.customers.plans`).

Every index is named and says which query it serves; an index no query uses
should not exist, because each one costs time on every write and every load.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex, OpClass
from django.db import models
from django.db.models import F, Func, Value
from django.db.models.functions import Coalesce, Lower, Upper
from django.utils import timezone

from core.folding import FUNCTION
from core.history_triggers import history_triggers
from core.read_table import Filter, Search, Sort, listed, read_table
from core.read_table_triggers import listed_triggers
from core.triggers import Trigger

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

    def __str__(self) -> str:
        return f"{self.street} {self.street_number}, {self.city_code} {self.city}, {self.country}"


class LowercaseEmailField(models.EmailField):
    """An e-mail address, kept in lower case (so that two that differ only in
    case are one, and a look-up of either finds it); an empty one is none."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return value.lower() if value else None


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
    email = LowercaseEmailField(null=True, blank=True)
    phone_number = models.CharField(max_length=32)
    birthday = models.DateField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)
    # The FK's index is declared below (appuser_address_id) so that it has a
    # name and a reason like every other index.
    address = models.ForeignKey(
        Address, on_delete=models.PROTECT, related_name="users", db_index=False
    )

    class Meta:
        verbose_name = "customer"
        permissions = [
            # GET /api/users/{id}/history/ and /personal-data/: history is personal data too.
            ("view_history", "Can view a customer's history"),
            # POST /api/users/{id}/erase/: the right to erasure, not a delete.
            ("erase_appuser", "Can erase a customer and their history"),
            # POST /api/users/bulk-update/: many customers changed by one request.
            ("bulk_change_appuser", "Can change many customers at once"),
        ]
        constraints = [
            # A customer number is unique: the services answer a duplicate
            # with a 400 naming customer_id (the read table repeats it).
            models.UniqueConstraint(fields=["customer_id"], name="appuser_customer_id_key"),
            # An e-mail address belongs to one customer, in any case: it is
            # stored in lower case (whoever writes), and unique when present.
            models.UniqueConstraint(fields=["email"], name="appuser_email_key"),
            models.CheckConstraint(
                condition=models.Q(email=Lower("email")), name="appuser_email_lower_case"
            ),
            # A customer is updated at the earliest when created (auto_now and
            # auto_now_add stamp them in that order). The list relies on it:
            # ?created_from=X implies last_updated >= X, a bound a walk of the
            # last_updated index starts from (core.customers.selectors.IMPLIED_BOUNDS).
            models.CheckConstraint(
                condition=models.Q(last_updated__gte=models.F("created")),
                name="appuser_updated_since_created",
            ),
        ]
        indexes = [
            # An address's customers: the PROTECT check when an address is
            # deleted, the copy-on-write check of the services ("does anyone
            # else live here?"), and the read table's trigger when an address
            # changes (which rows of core_customer_list to rewrite).
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
            # ?created_from=X implies last_activity >= X, where a walk of the
            # activity index starts (core.customers.selectors.IMPLIED_BOUNDS).
            models.CheckConstraint(
                condition=models.Q(last_activity__gte=models.F("created")),
                name="relationship_active_since_created",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.appuser_id}: {self.points} points"


class CustomerRow(models.Model):
    """A customer as the list shows them: the read table ``core_customer_list``.

    One row per customer: their own columns, their address's and their
    loyalty record's (null for a customer without one), exactly the join
    ``core_appuser JOIN core_address LEFT JOIN core_customerrelationship``.
    The list, its counts, the export and the admin's changelist read this
    table alone (see :mod:`core.customers.selectors`).

    **The declaration.** Each column names the field it copies and what the
    list does with it (:func:`core.read_table.listed`); everything else is
    derived from these lines and the indexes below: the triggers that keep
    the table (:mod:`core.read_table_triggers`, frozen by each migration),
    the API's row, the filters, the orderings, the search, the planning
    sample, the loader's columns. ``docs/list-query.md`` ("Adding a column")
    says how to add one.

    Nothing in the application writes it. Triggers on the three tables of
    record write a customer's row in the same transaction as every write of
    their customer, address or record, whoever writes: the API's services,
    the admin, the ORM, raw SQL. ``generate_data`` loads it by ``COPY``
    beside them.
    """

    id = listed(AppUser.id, filter=Filter.EXACT, sort=Sort.UNIQUE)
    first_name = listed(
        AppUser.first_name, filter=Filter.KNOWN, sort=Sort.PAIRED, search=Search.NAME
    )
    last_name = listed(AppUser.last_name, filter=Filter.KNOWN, sort=Sort.PAIRED, search=Search.NAME)
    gender = listed(AppUser.gender, filter=Filter.CHOICE)
    customer_id = listed(
        AppUser.customer_id, filter=Filter.EXACT, sort=Sort.UNIQUE, search=Search.EXACT
    )
    email = listed(
        AppUser.email, filter=Filter.EXACT, sort=Sort.TIES, search=Search.EXACT, key="email_key"
    )
    #: What ?email= compares and ?ordering=email sorts by: the address, or ""
    #: for a customer without one (first; a NULL cannot take part in a keyset).
    email_key = models.GeneratedField(
        expression=Coalesce("email", Value("")),
        output_field=models.CharField(max_length=254),
        db_persist=True,
    )
    phone_number = listed(AppUser.phone_number, filter=Filter.SUBSTRING, search=Search.DIGITS)
    birthday = listed(AppUser.birthday, filter=Filter.RANGE, sort=Sort.FEW_TIES, key="birthday_key")
    #: What ?ordering=birthday sorts by: customers without a birthday last (a
    #: NULL would make the keyset's row comparison unknown). A column, not an
    #: expression, so that a walk of its index hands its order on through
    #: the page statement's subqueries (see core.customers.page_statement).
    birthday_key = models.GeneratedField(
        expression=Coalesce("birthday", Value(NO_BIRTHDAY)),
        output_field=models.DateField(),
        db_persist=True,
    )
    created = listed(AppUser.created, filter=Filter.RANGE, sort=Sort.FEW_TIES)
    last_updated = listed(AppUser.last_updated, sort=Sort.FEW_TIES)
    address_id = listed(AppUser.address)
    street = listed(Address.street)
    street_number = listed(Address.street_number)
    city_code = listed(Address.city_code, filter=Filter.EXACT)
    city = listed(Address.city, filter=Filter.KNOWN, sort=Sort.TIES, search=Search.PLACE)
    country = listed(Address.country, filter=Filter.KNOWN, sort=Sort.TIES)
    points = listed(CustomerRelationship.points, filter=Filter.RANGE, sort=Sort.TIES)
    relationship_created = listed(CustomerRelationship.created)
    last_activity = listed(
        CustomerRelationship.last_activity, filter=Filter.RANGE, sort=Sort.FEW_TIES
    )

    class Meta:
        db_table = "core_customer_list"
        verbose_name = "customer (list)"
        indexes = [
            # ?ordering=<field> for each sortable field, in both directions (a
            # b-tree reads backwards as fast as forwards), its keyset seek
            # "(field, id) > (last seen)", and ?<field>_from=/_to= ranges.
            # Each ends with the id, the list's tie-breaker, so that a walk
            # of the index yields the page in order; ?ordering=id is the
            # primary key. Nobody pages by gender or phone number: those have
            # no b-tree, and each index costs about a second of every 3M-row
            # load and a little of every write.
            #
            # A name's ties (one customer in a hundred is a Smith) are ordered
            # by the other name: ?ordering=last_name,first_name is this index,
            # and so is ?last_name=…'s look-up of each known name containing
            # the text (core.customers.filters.KnownValueSubstring).
            models.Index(fields=["first_name", "last_name", "id"], name="customer_list_first_name"),
            models.Index(fields=["last_name", "first_name", "id"], name="customer_list_last_name"),
            # ?customer_id= (one customer) and ?ordering=customer_id.
            models.Index(fields=["customer_id"], name="customer_list_customer_id"),
            # ?ordering=birthday (customers without one last, see
            # birthday_key) and ?birthday_from=/_to=, which compare the same
            # column: both are ranges of this index.
            models.Index(fields=["birthday_key", "id"], name="customer_list_birthday"),
            models.Index(fields=["created", "id"], name="customer_list_created"),
            models.Index(fields=["last_updated", "id"], name="customer_list_last_updated"),
            # ?ordering=address__city; ?city= reads each known city containing
            # the text here (an equality per city).
            models.Index(fields=["city", "id"], name="customer_list_city"),
            # ?ordering=address__country (a country's customers by city),
            # ?ordering=address__country,address__city, and ?country=.
            models.Index(fields=["country", "city", "id"], name="customer_list_country"),
            # ?email= (exact; stored in lower case), ?search= of an address,
            # and ?ordering=email.
            models.Index(fields=["email_key", "id"], name="customer_list_email"),
            # ?city_code= (exact).
            models.Index(fields=["city_code"], name="customer_list_city_code"),
            # ?ordering=relationship__points and ?points_min=/_max=; the
            # customers without a record (NULL) sort last and are left out.
            models.Index(fields=["points", "id"], name="customer_list_points"),
            # ?ordering=relationship__last_activity and ?last_activity_from=/_to=.
            models.Index(fields=["last_activity", "id"], name="customer_list_last_activity"),
            # ?phone_number= (and search=): phone numbers are nearly all
            # distinct, so a substring is looked up by its trigrams. Django
            # compiles icontains to UPPER(col::text) LIKE UPPER(…): the index
            # is on that expression (see core.customers.filters.Substring).
            trigram_index("phone_number", "customer_list_phone_trgm"),
        ]

    def __str__(self) -> str:
        return f"{self.first_name} {self.last_name} ({self.customer_id})"


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


class HistoryEvent(models.Model):
    """A change of a customer, an address or a loyalty record, as PostgreSQL saw it.

    Written by triggers on the three tables of record
    (:mod:`core.history_triggers`), in the same transaction as the change,
    whoever writes: one event per row a statement inserted, updated or
    deleted, with only the fields that changed (``{"address.city": ["Wien",
    "Graz"]}``), the customer it concerns (an address's change, once per
    customer living there), and who wrote it: the context the application
    sets per transaction (:mod:`core.history.context`), or ``database`` for
    anything without one (``psql``, the shell).
    """

    class Entity(models.IntegerChoices):
        CUSTOMER = 1
        ADDRESS = 2
        RELATIONSHIP = 3
        #: The whole data set (generate_data replaced it).
        DATASET = 4

    class Kind(models.TextChoices):
        INSERT = "I", "created"
        UPDATE = "U", "changed"
        DELETE = "D", "deleted"
        TRUNCATE = "T", "truncated"
        #: A person erased on request: their events are gone, this one says so.
        ERASED = "E", "erased"
        #: The data set replaced by generate_data.
        REPLACED = "R", "replaced"

    class Source(models.IntegerChoices):
        DATABASE = 0
        API = 1
        ADMIN = 2
        COMMAND = 3
        IMPORT = 4

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField()
    entity = models.SmallIntegerField(choices=Entity)
    #: The changed row's primary key in its table (None: the whole table).
    row_id = models.BigIntegerField(null=True)
    #: The customer it concerns; None for an address no customer lives at.
    customer_id = models.BigIntegerField(null=True)
    kind = models.CharField(max_length=1, choices=Kind)
    #: The fields that changed, by their name in the API: [old, new].
    changes = models.JSONField(default=dict)
    #: The acting user's id (not a foreign key: the user may be deleted).
    actor_id = models.IntegerField(null=True)
    #: The request's id, or the import's.
    # NULL, not "": no request (a write from psql); it costs no byte.
    request_id = models.CharField(max_length=64, null=True)  # noqa: DJ001
    source = models.SmallIntegerField(choices=Source, default=Source.DATABASE)

    class Meta:
        db_table = "core_history"
        indexes = [
            # GET /api/users/{id}/history/ (a customer's events, newest first,
            # by cursor) and an erasure's deletion of a person's events.
            models.Index(fields=["customer_id", "id"], name="history_customer"),
            # A row's events in order: an erasure's events of an address no one
            # else lives at (some were written before anyone lived there),
            # and the replay of an address (core.tests' state machine).
            models.Index(fields=["entity", "row_id", "id"], name="history_row"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.get_entity_display()} {self.row_id}"


class SearchTerm(models.Model):
    """The distinct first names, last names, cities and countries: what the
    text filters and ``?search=`` look up before they read any customer.

    ``?last_name=sm`` has no trigram for an index to look up, and ``?search=jon``
    must find every name trigram-similar to "jon". Asked of 3M customers,
    either is a scan (or a trigram bitmap of every John, Jonathan and Jones
    to recheck); asked of the ~11,000 distinct names, it answers in a
    millisecond, and the customers with those names come from the read
    table's name b-trees by equality. Cities and countries (a few dozen) the
    same way.

    It holds every value a customer has: the read table's trigger function
    adds the values of every row it writes (migration 0011), whoever writes
    the customer, and generate_data rebuilds it in its swap. A value nobody
    has any more stays and matches nobody.
    """

    field = models.CharField(max_length=16)  # first_name, last_name, city or country
    value = models.CharField(max_length=100)

    class Meta:
        constraints = [
            # Adding a value that is already known is a no-op (ON CONFLICT).
            models.UniqueConstraint(fields=["field", "value"], name="search_term_key"),
        ]
        indexes = [
            # ?search='s similar names and cities, and the text filters' look-ups
            # (core.customers.known: crm_fold(value) % 'MUELLER', crm_fold(value)
            # LIKE '%MUEL%'), on the values folded (core.folding: ü as ue).
            GinIndex(
                OpClass(
                    Func(F("value"), function=FUNCTION, output_field=models.TextField()),
                    name="gin_trgm_ops",
                ),
                name="search_term_fold",
            ),
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


#: The entity of each table of record, in the history.
HISTORY_ENTITIES = {
    AppUser: HistoryEvent.Entity.CUSTOMER,
    Address: HistoryEvent.Entity.ADDRESS,
    CustomerRelationship: HistoryEvent.Entity.RELATIONSHIP,
}


def database_triggers() -> list[Trigger]:
    """Every trigger the declarations above generate: what the migrations must
    have frozen (``makemigrations`` adds what they have not, see core.triggers)."""
    table = read_table(CustomerRow)
    return [*listed_triggers(table), *history_triggers(table, HistoryEvent, HISTORY_ENTITIES)]
