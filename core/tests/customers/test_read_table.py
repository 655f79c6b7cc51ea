"""The list's read table never drifts from the join of the three tables of
record, whoever writes them: the API, the services, the admin, the ORM, raw
SQL; in bulk or one row at a time; and two connections at once. And the
history PostgreSQL keeps of it is complete: each customer's events, replayed
from nothing, are their row, and each event names the writer that made it."""

from __future__ import annotations

import itertools
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from core.customers import services
from core.dataset.loader import customer_dataset_replace
from core.dataset.sessions import separate_connection
from core.history.context import Source, Writer, writing_as
from core.models import Address, AppUser, CustomerRelationship, HistoryEvent
from core.security.api_users import api_user_create
from core.tests.admin_forms import customer_form
from core.tests.history_replay import listed, newest_event, replay_drift
from core.tests.read_table import drift

WAYS = ("api", "service", "admin", "orm", "sql")
NAMES = st.sampled_from(["Ada", "Zoë", "O'Brien", "Jürgen", "van Dijk", "Ng"])
CITIES = st.sampled_from(["Vienna", "Graz", "Lisboa", "Zürich"])


class Rollback(Exception):
    """Ends an example's savepoint: its writes leave no trace for the next."""


class Writes(RuleBasedStateMachine):
    """Customers, addresses and loyalty records created, changed, moved and
    deleted every way there is; after every step the read table is the join."""

    customers = Bundle("customers")

    def __init__(self) -> None:
        super().__init__()
        self.savepoint = transaction.atomic()
        self.savepoint.__enter__()
        token = api_user_create(
            username="writer", read_only=False, granted=("view_history", "erase_appuser")
        )
        self.writer = Client(headers={"authorization": f"Token {token}"})
        boss, _ = get_user_model().objects.get_or_create(
            username="boss", defaults={"is_staff": True, "is_superuser": True}
        )
        self.admin = Client()
        self.admin.force_login(boss)
        self.serial = itertools.count()
        #: The customers this machine created (their whole history is its own).
        self.created: set[int] = set()
        #: Each step's writer, as the history must name it, and where its events start.
        self.source: int | None = None
        self.since = self.newest_event()

    @staticmethod
    def newest_event() -> int:
        return HistoryEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0

    def as_command(self):
        """A service called the way a management command calls it: with its context."""
        return writing_as(Writer(Source.COMMAND, request_id="machine"))

    def wrote(self, way: str) -> None:
        """The writer the events of this step must name."""
        self.source = {
            "api": Source.API,
            "admin": Source.ADMIN,
            "service": Source.COMMAND,
        }.get(way, Source.DATABASE)

    def teardown(self) -> None:
        # Leaving the savepoint with an exception rolls it back.
        self.savepoint.__exit__(Rollback, Rollback(), None)

    def admin_save(self, customer: int, **changes: str) -> None:
        """The customer's page in the admin, changed and saved as an editor would."""
        url = f"/admin/core/appuser/{customer}/change/"
        response = self.admin.post(url, {**customer_form(self.admin, customer), **changes})
        assert response.status_code == 302, response.content[:2000]

    @invariant()
    def the_read_table_is_the_join(self) -> None:
        assert drift() == []

    @invariant()
    def each_customers_history_replays_to_their_row(self) -> None:
        assert replay_drift(sorted(self.created)) == []

    @invariant()
    def each_event_names_its_writer(self) -> None:
        events = HistoryEvent.objects.filter(id__gt=self.since)
        if self.source is not None:
            sources = set(events.exclude(kind="E").values_list("source", flat=True))
            assert sources <= {self.source}, (sources, self.source)
            if self.source in (Source.API, Source.ADMIN):
                writer = "writer" if self.source == Source.API else "boss"
                actors = set(events.values_list("actor_id", flat=True))
                assert actors <= {get_user_model().objects.get(username=writer).pk}
        self.since, self.source = self.newest_event(), None

    # -- customers ---------------------------------------------------------------

    @rule(target=customers, way=st.sampled_from(WAYS), name=NAMES, city=CITIES)
    def create(self, way: str, name: str, city: str) -> int:
        pk = self.created_by(way, name, city)
        self.created.add(pk)
        return pk

    def created_by(self, way: str, name: str, city: str) -> int:
        self.wrote(way)
        number = f"RT-{next(self.serial)}"
        address = {
            "street": "Gasse",
            "street_number": "1",
            "city_code": "1010",
            "city": city,
            "country": "Austria",
        }
        fields = {
            "first_name": name,
            "last_name": "Reader",
            "gender": "o",
            "customer_id": number,
            "phone_number": "+43 1 555",
        }
        if way == "api":
            response = self.writer.post(
                "/api/users/", {**fields, "address": address}, content_type="application/json"
            )
            assert response.status_code == 201, response.content
            return response.json()["id"]
        if way == "service":
            with self.as_command():
                return services.customer_create(address=address, **fields).pk
        if way == "admin":
            page = customer_form(self.admin)
            page.update(fields)
            page.update({f"address__{name}": value for name, value in address.items()})
            response = self.admin.post("/admin/core/appuser/add/", page)
            assert response.status_code == 302, response.content[:2000]
            return AppUser.objects.get(customer_id=number).pk
        if way == "orm":
            customer = AppUser.objects.create(address=Address.objects.create(**address), **fields)
            CustomerRelationship.objects.create(appuser=customer, points=3)
            return customer.pk
        with connection.cursor() as cursor:
            # Customer first, address after: the foreign key is checked at commit.
            cursor.execute(
                "INSERT INTO core_appuser (first_name, last_name, gender, customer_id, "
                "phone_number, address_id, created, last_updated) "
                "VALUES (%s, 'Reader', 'o', %s, '+1', "
                "nextval(pg_get_serial_sequence('core_address', 'id')), now(), now()) "
                "RETURNING id, address_id",
                [name, number],
            )
            pk, address_id = cursor.fetchone()
            cursor.execute(
                "INSERT INTO core_address (id, street, street_number, city_code, city, country) "
                "VALUES (%s, 'Gasse', '1', '1010', %s, 'Austria')",
                [address_id, city],
            )
        return pk

    @rule(customer=customers, way=st.sampled_from(WAYS), name=NAMES)
    def rename(self, customer: int, way: str, name: str) -> None:
        self.wrote(way)
        if way == "api":
            response = self.writer.patch(
                f"/api/users/{customer}/", {"first_name": name}, content_type="application/json"
            )
            assert response.status_code == 200, response.content
        elif way == "service":
            with self.as_command():
                services.customer_update(customer, first_name=name)
        elif way == "admin":
            self.admin_save(customer, first_name=name, relationship__points="42")
        elif way == "orm":
            AppUser.objects.filter(pk=customer).update(first_name=name)
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE core_appuser SET first_name = %s WHERE id = %s", [name, customer]
                )

    @rule(customer=customers, way=st.sampled_from(WAYS), points=st.integers(0, 10**6))
    def score(self, customer: int, way: str, points: int) -> None:
        self.wrote(way)
        if way == "api":
            response = self.writer.patch(
                f"/api/users/{customer}/",
                {"relationship": {"points": points}},
                content_type="application/json",
            )
            assert response.status_code == 200, response.content
        elif way == "service":
            with self.as_command():
                services.customer_update(customer, relationship={"points": points})
        elif way == "admin":
            self.admin_save(customer, relationship__points=str(points))
        elif way == "orm":
            record, _ = CustomerRelationship.objects.get_or_create(appuser_id=customer)
            record.points = points
            record.save()
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO core_customerrelationship (appuser_id, points, created, "
                    "last_activity) SELECT id, %s, created, created FROM core_appuser "
                    "WHERE id = %s ON CONFLICT (appuser_id) DO UPDATE SET points = EXCLUDED.points",
                    [points, customer],
                )

    @rule(customer=customers, way=st.sampled_from(("orm", "sql")))
    def forget_record(self, customer: int, way: str) -> None:
        self.wrote(way)
        if way == "orm":
            CustomerRelationship.objects.filter(pk=customer).delete()
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM core_customerrelationship WHERE appuser_id = %s", [customer]
                )

    # -- addresses: one may be shared by several customers ------------------------

    @rule(mover=customers, host=customers)
    def move_in_with(self, mover: int, host: int) -> None:
        self.wrote("sql")
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE core_appuser SET address_id = (SELECT address_id FROM core_appuser "
                "WHERE id = %s) WHERE id = %s",
                [host, mover],
            )

    @rule(customer=customers, way=st.sampled_from(("api", "admin", "orm", "sql")), city=CITIES)
    def change_address(self, customer: int, way: str, city: str) -> None:
        """Through the API and the admin a shared address is copied for this
        customer; the others change it for everyone who lives there."""
        self.wrote(way)
        address = AppUser.objects.get(pk=customer).address
        if way == "api":
            response = self.writer.patch(
                f"/api/users/{customer}/",
                {"address": {"city": city}},
                content_type="application/json",
            )
            assert response.status_code == 200, response.content
        elif way == "admin":
            self.admin_save(customer, address__city=city)
        elif way == "orm":
            Address.objects.filter(pk=address.pk).update(city=city)
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE core_address SET city = %s WHERE id = %s", [city, address.pk]
                )

    # -- many at once, and goodbyes -----------------------------------------------

    @rule(points=st.integers(-5, 5))
    def bulk(self, points: int) -> None:
        self.wrote("sql")
        with connection.cursor() as cursor:
            cursor.execute("UPDATE core_customerrelationship SET points = points + %s", [points])
            cursor.execute(
                "UPDATE core_appuser SET last_name = upper(last_name) WHERE mod(id, 2) = 0"
            )

    @rule(customer=consumes(customers), way=st.sampled_from(WAYS))
    def delete(self, customer: int, way: str) -> None:
        self.wrote(way)
        if way == "api":
            assert self.writer.delete(f"/api/users/{customer}/").status_code == 204
        elif way == "service":
            with self.as_command():
                services.customer_delete(customer)
        elif way == "admin":
            response = self.admin.post(f"/admin/core/appuser/{customer}/delete/", {"post": "yes"})
            assert response.status_code == 302, response.content[:2000]
        elif way == "orm":
            AppUser.objects.filter(pk=customer).delete()
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "DELETE FROM core_customerrelationship WHERE appuser_id = %s", [customer]
                )
                cursor.execute("DELETE FROM core_appuser WHERE id = %s", [customer])

    @rule(customer=consumes(customers))
    def erase(self, customer: int) -> None:
        """A person erased: no event of theirs is left but the one that says so."""
        self.wrote("api")
        assert self.writer.post(f"/api/users/{customer}/erase/").status_code == 200
        kinds = HistoryEvent.objects.filter(customer_id=customer).values_list("kind", flat=True)
        assert list(kinds) == ["E"]


@pytest.mark.django_db
def test_whoever_writes_the_read_table_stays_the_join(settings):
    settings.CRM_THROTTLE_RATES = {"anon": None, "user": None}
    customer_dataset_replace(n=30, chunk=30, seed=3)
    assert drift() == [], "as loaded"
    run_state_machine_as_test(
        Writes,
        settings=settings_for_machines(),
    )


def settings_for_machines():
    return settings(
        max_examples=25,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.mark.django_db
def test_truncating_the_tables_of_record_empties_the_read_table():
    customer_dataset_replace(n=20, chunk=20, seed=3)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE core_customerrelationship")
        assert drift() == []
        cursor.execute("TRUNCATE core_appuser CASCADE")
        cursor.execute("SELECT count(*) FROM core_customer_list")
        assert cursor.fetchone() == (0,)


# -- two connections at once ---------------------------------------------------------


def race(first: str, second: str, params: tuple[list, list]) -> None:
    """``first`` and ``second`` in two transactions on two real connections,
    interleaved: each makes its change, then both commit, the second while
    the first still holds its locks (it waits for them)."""
    one, two = separate_connection(), separate_connection()
    one.autocommit = two.autocommit = False
    try:
        one.execute(first, params[0])
        done = threading.Event()

        def second_writer() -> None:
            try:
                two.execute(second, params[1])
                two.commit()
            finally:
                done.set()

        thread = threading.Thread(target=second_writer)
        thread.start()
        # The second waits on the first's locks (or has written what does
        # not conflict); commit the first, then let the second finish.
        done.wait(0.5)
        one.commit()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        one.close()
        two.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("first", "second"),
    [
        # The customer's name and their address's city, at once.
        (
            "UPDATE core_appuser SET first_name = 'Raced' WHERE id = %s",
            "UPDATE core_address SET city = 'Racetown' WHERE id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s)",
        ),
        # The address first, then the name.
        (
            "UPDATE core_address SET city = 'Racetown' WHERE id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s)",
            "UPDATE core_appuser SET first_name = 'Raced' WHERE id = %s",
        ),
        # The record's points and the customer's name.
        (
            "UPDATE core_customerrelationship SET points = 4242 WHERE appuser_id = %s",
            "UPDATE core_appuser SET last_name = 'Raced' WHERE id = %s",
        ),
        # A customer moves to a shared address while it changes.
        (
            "UPDATE core_address SET city = 'Racetown' WHERE id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s + 1)",
            "UPDATE core_appuser SET address_id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s + 1) WHERE id = %s",
        ),
        # The other way round.
        (
            "UPDATE core_appuser SET address_id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s + 1) WHERE id = %s",
            "UPDATE core_address SET city = 'Racetown' WHERE id = "
            "(SELECT address_id FROM core_appuser WHERE id = %s + 1)",
        ),
    ],
)
def test_racing_writes_on_two_connections_leave_the_read_table_the_join(first, second):
    customer_dataset_replace(n=20, chunk=20, seed=3)
    pk = 5

    def params(statement: str) -> list:
        return [pk] * statement.count("%s")

    starts, after = {c: listed(c) for c in (pk, pk + 1)}, newest_event()
    race(first, second, (params(first), params(second)))
    assert drift() == []
    # The history of the race, replayed on the rows before it, is the rows after it.
    assert replay_drift([pk, pk + 1], starts=starts, after=after) == []


@pytest.mark.django_db(transaction=True)
def test_a_customer_created_at_an_address_that_changes_meanwhile_is_listed_with_the_change():
    """The new customer's row cannot be locked before it exists: its address is."""
    customer_dataset_replace(n=20, chunk=20, seed=3)
    address_id = AppUser.objects.get(pk=3).address_id
    one, two = separate_connection(), separate_connection()
    one.autocommit = two.autocommit = False
    try:
        one.execute("UPDATE core_address SET city = 'Movedtown' WHERE id = %s", [address_id])
        created = threading.Event()

        def newcomer() -> None:
            two.execute(
                "INSERT INTO core_appuser (first_name, last_name, gender, customer_id, "
                "phone_number, address_id, created, last_updated) "
                "VALUES ('New', 'Comer', 'o', 'NEW-1', '+1', %s, now(), now())",
                [address_id],
            )
            two.commit()
            created.set()

        thread = threading.Thread(target=newcomer)
        thread.start()
        assert not created.wait(0.5), "the newcomer waits for the address's change"
        one.commit()
        thread.join(10)
    finally:
        one.close()
        two.close()
    assert drift() == []
    assert AppUser.objects.filter(customer_id="NEW-1").exists()
