"""Reads of customers: the one place that builds the customer list query.

The API, the admin, the export and the benchmark all start from
:func:`customer_list`, so a filter, an ordering or a search means the same
SQL everywhere; :mod:`core.customers.pagination` pages it and counts it.

Joins: the address is an inner join (every customer has one). The loyalty
record is a reverse one-to-one, which Django left-joins; ordered by one of its
columns, the list **inner**-joins it instead, because only then can
PostgreSQL walk the ``relationship_points_user`` index to serve
``ordering=-relationship__points``: through the LEFT OUTER JOIN the same page
costs a sort of the whole table (2.5 s at 3M rows in the original). A
customer without a record (``generate_data``, the API and the admin always
create both) has no place in such an order and is left out of it.

**Plans.** A page of a filtered, ordered list can be found two ways, and
either is a cliff where the other is cheap (see :class:`ListPlan`):

* *walk* the ordering's index and test each customer against the filters
  until a page is full: cheap when many customers match (at 3% of customers,
  a 50-row page walks about 1,700), ruinous when few do (PostgreSQL's LIMIT
  trap: 148,558 customers walked for 51 with enough points);
* *sort*: fetch the matching customers through the filters' own indexes and
  sort them: cheap when few match, ruinous when many do.

PostgreSQL chooses between them from its estimate of the matches and the
assumption that they are spread evenly along the ordering's index; where a
filter reads another table than the ordering, it cannot even tell. So the
list chooses for itself (:func:`list_plan`), from an estimate per table
(:func:`table_estimates`), and writes the query so that PostgreSQL has no
other way to run it. A walk also tests the selective filters of the other
tables by membership in a set built once from those tables' own indexes
(:class:`HashedIn`), instead of a join per walked customer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connections
from django.db.models import BooleanField, Expression, F, Model, QuerySet, Subquery

from core.models import Address, AppUser, CustomerRelationship
from crm.replicas import read_alias

from .columns import customer_rows
from .filters import (
    CustomerFilter,
    DistinctSubstring,
    Substring,
    apply_on_own_table,
    filter_table,
    has_trigram,
)
from .ordering import (
    ADDRESS,
    CUSTOMER,
    RELATIONSHIP,
    SEARCH_RANK,
    Ordering,
    TableColumn,
    customer_ordering,
)
from .pagination import keyset_page, planner_rows
from .search import SearchMatch, search_match

#: The table each part of an ordering walks, by the model it belongs to.
TABLES: dict[type[Model], str] = {
    AppUser: CUSTOMER,
    Address: ADDRESS,
    CustomerRelationship: RELATIONSHIP,
}


class HashedIn(Expression):
    """``(column IN (subquery)) IS TRUE``: membership in a set built once.

    PostgreSQL turns a plain ``column IN (subquery)`` into a join, and a join
    costs an index probe of the other table per row (4 µs measured here). A
    membership test it cannot pull up (the ``IS TRUE`` does that) stays a
    *hashed SubPlan*: the subquery runs once, from its own index (an
    index-only scan of ``relationship_points_user`` yields the ids of the
    customers with enough points), its result becomes a hash table, and each
    row costs a hash probe. PostgreSQL also cannot use it to choose a plan,
    which is the point: :func:`list_plan` has chosen.
    """

    conditional = True
    output_field = BooleanField()

    def __init__(self, column: Expression, subquery: QuerySet) -> None:
        super().__init__()
        self.column, self.subquery = column, Subquery(subquery)

    def get_source_expressions(self) -> list:
        return [self.column, self.subquery]

    def set_source_expressions(self, expressions: list) -> None:
        self.column, self.subquery = expressions

    def as_sql(self, compiler, connection):
        column, column_params = compiler.compile(self.column)
        subquery, subquery_params = compiler.compile(self.subquery)
        return f"(({column}) IN {subquery}) IS TRUE", [*column_params, *subquery_params]


#: Costs in microseconds, measured at 3M customers on the reference machine
#: (the plan only compares them): reading one entry of an index without its
#: table (an index-only scan) ...
INDEX_ENTRY_US = 0.15
#: ... adding a match to a membership set (reading its entry and hashing it:
#: the 36,630 Smiths took 8 ms, where a walk testing each row's name found
#: its page in 4) ...
MEMBER_US = 0.3
#: ... reading the table row behind an index entry ...
TABLE_ROW_US = 1.5
#: ... the same, where the index follows the rows' physical order (the
#: customers' ids and sign-up times, see FOLLOWS_ROWS): the rows come page
#: by page (200,000 customers walked by id in 23 ms) ...
SEQUENTIAL_ROW_US = 0.15
#: ... joining another table's row through its primary key ...
JOIN_ROW_US = 4.0
#: ... the same, where the rows come in that table's physical order (40,000
#: customers by id joined to their records in 29 ms) ...
SEQUENTIAL_JOIN_US = 0.7
#: ... and sorting a match by keys at hand (a top-N heap sort: 277,000
#: customer ids in 13 ms); a key not at hand is read first (a row, a join).
SORT_US = 0.1
#: The rows a typical page reads: a 50-row page and the row that says another follows.
PAGE_ROWS = 51
#: How much longer than expected a walk may turn out. Its length assumes the
#: matches are spread evenly along the ordering; correlated columns break
#: that (the customers whose last activity was years ago signed up years
#: ago: ordered by sign-up, newest first, they come last). Membership sets
#: are built against a walk this many times as long as expected, so that a
#: misjudged walk reads an index, not a table per entry.
WALK_MISJUDGED = 10


@dataclass(frozen=True)
class ListPlan:
    """How the list query runs: *sort* the matches or *walk* the ordering's index.

    ``estimate`` is the expected number of matching customers, ``tables`` the
    expected matches per table's filters (see :func:`table_estimates`).
    A walk sorts by the ordering's index and tests ``probes`` (tables whose
    filters are selective) by membership; a sort fetches the matches through
    the filters' indexes and sorts them (see
    :func:`core.customers.pagination.keyset_page`).
    """

    estimate: int
    sort: bool
    probes: frozenset[str] = frozenset()
    #: The table whose rows the plan reads first (the walked or driving
    #: table); membership tests apply to its rows.
    scanned: str = CUSTOMER
    tables: Mapping[str, int] = field(default_factory=dict)
    #: The estimate is a count: one table's filters, counted (see bounded_count).
    exact: bool = False
    #: What reading every match costs (µs, the cheapest sort's reads): what a
    #: count of them costs.
    count_us: float = 0.0
    #: A sort: find the matches first (their ids, from indexes and sets
    #: alone), then fetch the sort keys of those only. Sorted by a column of
    #: the rows behind the driver's index, PostgreSQL would read the row of
    #: every driver match before testing the sets: the 50,647 customers
    #: named like "sm", for the 23 of them with 66,252 points (36 ms at 3M;
    #: found first, 2).
    filter_first: bool = False

    @property
    def strategy(self) -> str:
        return "sort" if self.sort else "walk"


class Candidate(NamedTuple):
    """One way to run the list query, as :func:`list_plan` prices it."""

    cost: float
    sort: bool
    probes: frozenset[str]
    #: The table whose rows the plan reads first (see ListPlan.scanned).
    scanned: str
    #: A sort: what reading its matches costs (µs), without sorting them; and
    #: whether they are found before their sort keys are read (ListPlan.filter_first).
    reads: float = 0.0
    filter_first: bool = False


class CustomerList(QuerySet):
    """Customers, remembering the :class:`ListPlan` their query was written for.

    ``joined`` is the same customers with every filter written as a join: a
    membership test needs a driving scan that a count does not have, so a
    count reads this form (see :func:`core.customers.pagination.customer_count`),
    and so does a deferred join's outer query.
    """

    plan: ListPlan | None = None
    joined: QuerySet | None = None
    #: The same customers as a query of their loyalty records alone, where the
    #: plan reads the records first and every filter and sort key can be
    #: tested or read on a record (the customers' filters as a membership
    #: set): a page's ids then come without a join to the customers per
    #: record (90,000 records sorted by customer id: 25 ms, where joining
    #: each to its customer first took 140).
    records: QuerySet | None = None
    #: Every customer with the sort keys at hand (and no filter), where the
    #: plan finds the matches first (ListPlan.filter_first): the page's ids are
    #: sorted from these rows, for the matches' ids only.
    keyed: QuerySet | None = None

    def _clone(self):
        clone = super()._clone()
        clone.plan, clone.joined = self.plan, self.joined
        clone.records, clone.keyed = self.records, self.keyed
        return clone

    def with_joins(self) -> QuerySet:
        """The same customers, every filter a join (see the class docstring)."""
        return self.joined if self.joined is not None else self


def customer_list(
    *,
    filters: Mapping[str, Any] | None = None,
    ordering: Ordering | None = None,
    search: str | None = None,
) -> QuerySet:
    """Customers matching ``filters`` (already validated by :class:`CustomerFilter`)
    that have a place in ``ordering``.

    Not yet ordered or paged: see :mod:`core.customers.pagination`. With an
    ordering and filters, the query is written for its :class:`ListPlan`
    (``queryset.plan``).
    """
    filters = {name: resolved(name, value) for name, value in (filters or {}).items()}
    # The search's look-ups (similar names, cities) are made once, for the
    # estimates and the query alike.
    match = search_match(search) if search else None
    plan = None
    if ordering is not None and (filters or match):
        searched = match.apply(AppUser._default_manager.all()) if match else None
        plan = list_plan(filters, ordering, searched)
    return written_list(filters, ordering, match, plan)


def written_list(
    filters: Mapping[str, Any],
    ordering: Ordering | None,
    match: SearchMatch | None,
    plan: ListPlan | None,
) -> CustomerList:
    """The customers of ``filters`` and ``match``, their query written for ``plan``:
    each table's filters either tested on the rows the plan reads, or as
    membership in a set (the plan's ``probes``)."""
    customers = CustomerList(AppUser)
    if match is not None:
        customers = match.ranked(customers)
    if ordering is not None and ordering.by_record:
        # Makes Django inner-join the loyalty record (see the module docstring).
        customers = customers.filter(relationship__isnull=False)
    probes = plan.probes if plan is not None else frozenset()
    scanned = plan.scanned if plan is not None else CUSTOMER
    keyed = customers
    queryset = joined = customers
    probed: dict[type[Model], list[tuple[str, Any]]] = {}
    # A set of addresses does not say which of an address's customers
    # match: with the address index scanned, the customers' own filters are
    # tested on the join too.
    on_rows = {model for model in TABLES if TABLES[model] not in probes}
    if scanned == ADDRESS:
        on_rows.add(AppUser)
    if match is not None:
        joined = joined.filter(match.condition)
        if CUSTOMER in probes:
            probed[AppUser] = []
        if AppUser in on_rows:
            queryset = queryset.filter(match.condition)
    for name, value in filters.items():
        # What FilterSet.filter_queryset does, without instantiating a
        # FilterSet (it deep-copies every filter: a millisecond per request).
        joined = CustomerFilter.base_filters[name].filter(joined, value)
        table = filter_table(name)
        if TABLES[table] in probes:
            probed.setdefault(table, []).append((name, value))
        if table in on_rows:
            queryset = CustomerFilter.base_filters[name].filter(queryset, value)
    for table, table_filters in probed.items():
        searched = match if table is AppUser else None
        queryset = queryset.filter(membership(table, table_filters, scanned, searched))
    starts = implied_starts(filters, ordering) if plan is not None and not plan.sort else {}
    if starts:
        queryset = queryset.filter(**starts)
    queryset.plan = plan
    queryset.joined = joined if probed else None
    if plan is not None and plan.filter_first:
        queryset.keyed = keyed
    if scanned == RELATIONSHIP and ordering is not None and ordering.on_records() is not None:
        queryset.records = records_list(filters, match, probed)
        if queryset.records is not None and starts:
            # The same bound, as the records' own column.
            queryset.records = queryset.records.filter(
                **{name.removeprefix("relationship__"): value for name, value in starts.items()}
            )
    return queryset


def implied_starts(filters: Mapping[str, Any], ordering: Ordering | None) -> dict[str, Any]:
    """Lower bounds on the ordering's first column that the filters imply (see
    IMPLIED_STARTS), as lookups: where a walk of its index starts."""
    if ordering is None:
        return {}
    lead = ordering.fields[0].removeprefix("-")
    starts = {}
    for name, bounded in IMPLIED_STARTS.items():
        if name in filters and lead in bounded:
            instant, _ = filters[name]
            starts[f"{lead}__gte"] = instant
    return starts


def records_list(
    filters: Mapping[str, Any],
    match: SearchMatch | None,
    probed: Mapping[type[Model], list[tuple[str, Any]]],
) -> QuerySet | None:
    """The loyalty records of the matching customers, if every filter can be
    tested on a record: its own, or the customers' as a membership set (see
    :attr:`CustomerList.records`); else None."""
    tables = {filter_table(name) for name in filters} | ({AppUser} if match else set())
    # An address set is never tested on a record (it holds no address_id,
    # see TESTABLE), so address filters end it here too.
    if any(table is not CustomerRelationship and table not in probed for table in tables):
        return None
    records = CustomerRelationship._default_manager.all()
    for table, column in ((AppUser, "id"), (CustomerRelationship, "appuser_id")):
        if table in probed:
            searched = match if table is AppUser else None
            records = records.filter(
                HashedIn(F("appuser"), set_members(table, probed[table], column, searched))
            )
    if CustomerRelationship not in probed:
        for name, value in filters.items():
            if filter_table(name) is CustomerRelationship:
                records = apply_on_own_table(name, records, value)
    return records


def resolved(name: str, value: Any) -> Any:
    """A filter's value with its look-ups done once (the cities or names that
    contain a substring), for the estimates and the query alike; the
    substring itself where too many names contain it."""
    spec = CustomerFilter.base_filters[name]
    if isinstance(spec, DistinctSubstring) and isinstance(value, str) and value:
        values = spec.values_containing(value)
        return value if values is None else values
    return value


def membership(
    table: type[Model],
    table_filters: list[tuple[str, Any]],
    scanned: str,
    match: SearchMatch | None = None,
) -> HashedIn:
    """The filters of one table (and, for the customers, the search) as a
    membership test on the rows of the ``scanned`` table."""

    def members(column: str) -> QuerySet:
        return set_members(table, table_filters, column, match)

    if table is Address:
        if scanned == ADDRESS:
            # Tested on the address index as it is walked.
            return HashedIn(TableColumn("address", "city", "id"), members("id"))
        return HashedIn(F("address_id"), members("id"))
    if scanned == ADDRESS:
        # The addresses of the matching customers (see TESTABLE).
        return HashedIn(TableColumn("address", "city", "id"), members("address_id"))
    column = "appuser_id" if table is CustomerRelationship else "id"
    if scanned == RELATIONSHIP:
        # Tested on the record as it is read, before any customer is joined.
        return HashedIn(TableColumn("relationship", "points", "appuser"), members(column))
    return HashedIn(F("id"), members(column))


def set_members(
    table: type[Model],
    table_filters: list[tuple[str, Any]],
    column: str,
    match: SearchMatch | None = None,
) -> QuerySet:
    """``column`` of the rows of ``table`` that meet its filters (and the
    search): a set's members."""
    members = table._default_manager.all()
    if match is not None and not table_filters:
        return match.members(members, column)
    if match is not None:
        members = members.filter(match.condition)
    for name, value in table_filters:
        members = apply_on_own_table(name, members, value)
    return members.values(column)


@dataclass(frozen=True)
class Group:
    """One table's filters: how many rows of its table match, and how its set is built."""

    table: str
    matches: int
    rows: int
    #: Its matching rows' keys come from one index alone (ranges and
    #: equalities on b-trees), not from the table behind a trigram index.
    index_only: bool
    #: It can be a membership set at all: it has an index to read it from
    #: (gender has none) and fits in work_mem (MAX_MEMBERS).
    buildable: bool
    #: ``matches`` is a count, not an estimate.
    exact: bool = False
    #: The rows its best index reads to find them: ``matches`` for one
    #: filter; for several, what the most selective indexed one reads alone.
    read: int | None = None
    #: Several b-tree filters on different columns: the index entries that
    #: combining their bitmaps reads (PostgreSQL's BitmapAnd), after which
    #: only the matches' rows are read.
    bitmaps: int | None = None

    @property
    def share(self) -> float:
        return self.matches / self.rows if self.rows else 0.0

    @property
    def build_us(self) -> float:
        """What building the group's membership set costs."""
        return self.read_us + self.matches * (MEMBER_US - INDEX_ENTRY_US)

    @property
    def read_us(self) -> float:
        """What reading the group's matches through its index costs."""
        read = self.matches if self.read is None else max(self.read, self.matches)
        if self.index_only:
            return read * INDEX_ENTRY_US
        if self.bitmaps is not None:
            combined = self.bitmaps * INDEX_ENTRY_US + self.matches * TABLE_ROW_US
            return min(read * TABLE_ROW_US, combined)
        return read * TABLE_ROW_US


#: The membership sets a scan of each table can test without a join: a
#: customer row (or its index entry) holds the customer's id and address_id;
#: a record holds the customer's id; an address its own id.
TESTABLE = {
    CUSTOMER: {CUSTOMER, RELATIONSHIP, ADDRESS},
    RELATIONSHIP: {CUSTOMER, RELATIONSHIP},
    # The addresses of the matching customers (their indexes carry
    # address_id): an address in the set has a matching customer; the join
    # to its customers still tests each of them.
    ADDRESS: {ADDRESS, CUSTOMER},
}
#: The largest membership set a plan builds: PostgreSQL hashes a subplan only
#: if it fits in work_mem (times hash_mem_multiplier), and runs it again for
#: every row otherwise; the API's sessions set work_mem to hold this many
#: (see crm.postgres.config.session_settings).
MAX_MEMBERS = 500_000
#: Orderings whose index holds the customer's address_id (see core.models).
COVERING_WALKS = {"first_name", "last_name", "birthday", "created", "last_updated"}


def list_plan(
    filters: Mapping[str, Any], ordering: Ordering, searched: QuerySet | None = None
) -> ListPlan:
    """Walk or sort, and which tables to test by membership, by the least expected cost.

    The costs are the microseconds above times the rows each plan reads:

    * a **walk** reads about ``PAGE_ROWS x customers / matches`` entries of
      the ordering's index (if the matches are spread along it), each from
      the index alone if every filter is a membership test, else with its row;
      a selective filter becomes a membership test when its set costs less
      to build than the rows and joins it saves;
    * a **sort** reads one table's filters through that table's index (the
      *driver*), tests the other tables by membership or joins them, and
      sorts the matches.

    With a filter on another table than the ordering's, PostgreSQL cannot
    tell these costs apart (it assumes independent, evenly spread matches
    and knows nothing of membership sets); the estimates per table are ours.
    """
    groups, customers = table_estimates(filters, searched)
    estimate = customers
    for group in groups:
        estimate *= group.share
    estimate = round(estimate)
    names = {group.table: group.matches for group in groups}
    # One table's filters, counted: the count of customers too (each has one
    # record at most). Not for an address: several customers may share one;
    # nor for the customers' own filters where the list is ordered by the
    # record, which leaves out the customers without one.
    by_record = ordering.by_record
    exact = (
        len(groups) == 1
        and groups[0].exact
        and (groups[0].table == RELATIONSHIP or (groups[0].table == CUSTOMER and not by_record))
    )
    sorts = [sort_cost(groups, driver, estimate, ordering) for driver in groups if driver.buildable]
    candidates = list(sorts)
    if ordering.fields[0].removeprefix("-") != SEARCH_RANK or not sorts:
        # An ordering with an index (the search's rank has none) can be walked.
        skipped = walk_skip(filters, ordering)
        candidates.append(walk_cost(groups, ordering, customers, estimate, skipped))
    chosen = min(candidates, key=lambda candidate: candidate.cost)
    # Without an index to read the matches from, a count reads every customer.
    count_us = min((sort.reads for sort in sorts), default=customers * TABLE_ROW_US)
    return ListPlan(
        estimate,
        chosen.sort,
        chosen.probes,
        chosen.scanned,
        names,
        exact,
        count_us,
        filter_first=chosen.filter_first,
    )


def walk_cost(
    groups, ordering: Ordering, customers: int, estimate: int, skipped: float = 0.0
) -> Candidate:
    """Walking the ordering's index, ``skipped`` (a share of the customers) passed
    before the first match."""
    walk = ordering.keys[0].table
    walked = PAGE_ROWS * customers / max(estimate, 1) + skipped * customers
    covering = walk != CUSTOMER or ordering.fields[0].removeprefix("-") in COVERING_WALKS
    # A walk in the rows' physical order (the customers by id or sign-up) reads
    # their rows, and joins their records and addresses (written in the same
    # order), page by page.
    lead = ordering.fields[0].removeprefix("-")
    sequential = walk == CUSTOMER and abs(column_correlation(lead)) >= FOLLOWS_ROWS
    row = SEQUENTIAL_ROW_US if sequential else TABLE_ROW_US
    join = SEQUENTIAL_JOIN_US if sequential else JOIN_ROW_US
    probes, cost, survivors, joins = set(), 0.0, walked, False
    for group in sorted(groups, key=lambda g: g.share):
        # A set of another table bounds what a walk costs per entry (a hash
        # probe, not a join), however far it goes: it is worth building
        # against a walk WALK_MISJUDGED times as long. The walked table's own
        # filters are tested on the row the walk reads anyway; a set of them
        # (every Smith, from the trigram index, for ?last_name=smith: 60 ms
        # at 3M) is worth it only against the walk as expected (7 ms).
        saves = walked * row if group.table == walk else walked * WALK_MISJUDGED * join
        if group.buildable and group.table in TESTABLE[walk] and group.build_us < saves:
            probes.add(group.table)
            cost += group.build_us
            survivors *= group.share
        if group.table != walk and (group.table not in probes or walk == ADDRESS):
            joins = True
    direct = any(g.table == walk and g.table not in probes for g in groups)
    # A set of addresses is tested on the address_id the walked index must
    # hold; sets of customers and records on the id every index holds.
    entry = INDEX_ENTRY_US if (covering or ADDRESS not in probes) and not direct else row
    cost += walked * entry + (survivors * join if joins else 0.0)
    return Candidate(cost, False, frozenset(probes), walk)


def sort_cost(groups, driver: Group, estimate: int, ordering: Ordering) -> Candidate:
    """Sorting the matches, read through ``driver``."""
    cost, survivors, probes = driver.read_us, float(driver.matches), set()
    # The tables whose rows each match has been read from by the time it is sorted.
    held = set() if driver.index_only else {driver.table}
    if driver.table == ADDRESS:
        # Each address read joins its customers (appuser_address_id).
        cost += driver.matches * JOIN_ROW_US
        held.add(CUSTOMER)
    joined = set()
    for group in sorted(groups, key=lambda g: g.share):
        if group is driver:
            continue
        if group.buildable and group.table in TESTABLE[driver.table]:
            probes.add(group.table)
            cost += group.build_us
            survivors *= group.share
        if group.table not in probes or driver.table == ADDRESS:
            joined.add(group.table)
    if joined:
        cost += survivors * JOIN_ROW_US
        held |= joined
    # Every table's rows carry the customer's id: a sort by id (unique: the
    # only key) has its key.
    by_id = ordering.fields[0].removeprefix("-") == "id"
    keys = set() if by_id else {key.table for key in ordering.keys}
    fetch = sum(estimate * JOIN_ROW_US for table in keys - held if table != driver.table)
    first = False
    if driver.table in keys - held:
        # A key in the driver's rows, not in the index it reads them from:
        # PostgreSQL reads the row of every match of the driver, before the
        # sets test it, unless the matches are found first, index-only, and
        # only theirs are fetched by id (see ListPlan.filter_first).
        every, survivors_only = driver.matches * TABLE_ROW_US, estimate * JOIN_ROW_US
        first = survivors_only < every
        fetch += min(every, survivors_only)
    return Candidate(
        cost + fetch + estimate * SORT_US,
        True,
        frozenset(probes),
        driver.table,
        reads=cost,
        filter_first=first,
    )


#: Columns whose order follows the rows' physical order at least this
#: closely (pg_stats.correlation) place a range's matches in one stretch of
#: any other such column's index: a customer's last update (0.84) is never
#: before their sign-up, so ``created_from=<two months ago>`` ordered by
#: ``last_updated`` walked nearly every customer first (1.9 s at 3M). Less
#: closely (a loyalty record's last activity: 0.67), the matches are only
#: sparser at one end, not absent: priced as a stretch passed, such walks
#: were wrongly refused.
FOLLOWS_ROWS = 0.8
#: Lower bounds that bound other sortable columns the same way, by the
#: tables' constraints: nobody is updated before being created
#: (``appuser_updated_since_created``), a customer's loyalty record is
#: created after the customer and active since then
#: (``relationship_created_after_customer``, ``relationship_active_since_created``).
#: A walk of such a column starts at the bound: with ``created_from`` two
#: months ago, ordered by ``last_updated``, the walk skips the customers last
#: updated before then instead of testing each (97% of 3M customers: 1.9 s;
#: at 10M a sort of the 4M matches instead hit the 2 s statement timeout).
IMPLIED_STARTS = {"created_from": ("last_updated", "relationship__last_activity")}
#: The range filters by column, and whether each is a lower bound.
LOWER_BOUNDS = {
    "created_from": True,
    "created_to": False,
    "birthday_from": True,
    "birthday_to": False,
    "points_min": True,
    "points_max": False,
    "last_activity_from": True,
    "last_activity_to": False,
}


def walk_skip(filters: Mapping[str, Any], ordering: Ordering) -> float:
    """The share of the customers a walk of ``ordering`` passes before its first
    match, where a range filter's column and the ordering's follow one order.

    A walk's length assumes the matches are spread evenly along the ordering;
    columns that follow the order in which customers were written break
    that. Customers signed up in id order, so ``?created_to=2018-08-21`` (the
    oldest third) ordered by ``-id`` comes last in the walk: the walk passes
    the two thirds signed up since before its first match (310 ms at 3M
    customers, where the matches sorted cost 32). PostgreSQL's statistics
    say how closely each column follows the rows' order
    (pg_stats.correlation); where both the range's column and the
    ordering's do, the matches lie at one end of the walk, and the other end
    is passed first when the walk starts there.
    """
    lead = ordering.fields[0]
    descending, field = lead.startswith("-"), lead.removeprefix("-")
    walked = column_correlation(field)
    if abs(walked) < FOLLOWS_ROWS:
        return 0.0
    skipped = 0.0
    for name, lower in LOWER_BOUNDS.items():
        if name not in filters or CustomerFilter.base_filters[name].field_name == field:
            continue  # a range of the walked column itself is where the walk starts
        if field in IMPLIED_STARTS.get(name, ()):
            continue  # so is a range that bounds the walked column too
        other = "_to" if lower else "_from"
        if name.replace("_from" if lower else "_to", other) in filters:
            continue  # both bounds: the stretch could lie anywhere
        spec = CustomerFilter.base_filters[name]
        followed = column_correlation(spec.field_name)
        if abs(followed) < FOLLOWS_ROWS:
            continue
        # Do the matches lie where the walk ends (at the rows' high end if the
        # walk starts low, and the other way round)?
        matches_high = lower == (followed > 0)
        walk_starts_high = descending == (walked > 0)
        if matches_high == walk_starts_high:
            continue
        model = filter_table(name)
        rows = planner_rows(apply_on_own_table(name, model._default_manager.all(), filters[name]))
        share = min(1.0, rows / table_sizes()[model])
        strength = min(abs(followed), abs(walked))
        skipped = max(skipped, (1 - share) * strength)
    return skipped


#: How long a process trusts the correlations it read (seconds), as table_sizes.
CORRELATIONS_SECONDS = 60
_correlations: dict[str, tuple[float, dict[str, float]]] = {}


def column_correlation(field: str) -> float:
    """How closely a field's column follows the rows' physical order (-1 to 1;
    0 if unknown), as ANALYZE last measured it (pg_stats, read once a minute
    per process and database). A loyalty record's rows follow their
    customers' ids (they are written together), so their correlations are
    comparable."""
    alias = read_alias()
    read_at, correlations = _correlations.get(alias, (0.0, {}))
    if time.monotonic() - read_at >= CORRELATIONS_SECONDS:
        tables = [m._meta.db_table for m in (AppUser, CustomerRelationship)]
        with connections[alias].cursor() as cursor:
            cursor.execute(
                "SELECT tablename, attname, correlation FROM pg_stats "
                "WHERE schemaname = current_schema() AND tablename = ANY(%s) "
                "AND correlation IS NOT NULL",
                [tables],
            )
            rows = cursor.fetchall()
        relationship = CustomerRelationship._meta.db_table
        correlations = {
            (f"relationship__{column}" if table == relationship else column): value
            for table, column, value in rows
        }
        _correlations[alias] = (time.monotonic(), correlations)
    return correlations.get(field, 0.0)


BTREE, TRIGRAM, NO_INDEX = "btree", "trigram", "none"


def filter_index(name: str, value: Any) -> str:
    """What kind of index serves the filter ``name=value`` (see core.models): a
    b-tree (ranges, equalities, the city and country look-ups), a trigram
    index (substrings of names and phone numbers with a trigram in them) or
    none (gender: three values; a substring without a trigram, see
    :class:`core.customers.filters.Substring`)."""
    spec = CustomerFilter.base_filters[name]
    if spec.field_name == "gender":
        return NO_INDEX
    if isinstance(spec, DistinctSubstring):
        # The values containing it, or the text tested on each row.
        return BTREE if isinstance(value, list) else NO_INDEX
    if isinstance(spec, Substring):
        return TRIGRAM if has_trigram(value) else NO_INDEX
    return BTREE


def table_estimates(
    filters: Mapping[str, Any], searched: QuerySet | None = None
) -> tuple[list[Group], int]:
    """Each table's filters as a :class:`Group`; and how many customers there are.

    Each table's filters are estimated by the planner on that table alone,
    where its statistics apply directly (a city list against the city's
    most common values, a points range against its histogram), and counted
    where that is cheap (see :func:`bounded_count`); the tables combine as
    independent. ``searched`` (customers matching a search) counts with the
    customers' filters.

    A substring tested on each row (``strpos() > 0``, which the planner
    guesses at a third of the rows) is estimated otherwise: a name as the
    known names that contain it (``last_name IN ('Anna', 'Hannah', …)``), a
    phone number as ``LIKE``.
    """
    by_table: dict[type[Model], list[tuple[str, Any]]] = {}
    for name, value in filters.items():
        by_table.setdefault(filter_table(name), []).append((name, value))
    if searched is not None:
        by_table.setdefault(AppUser, [])
    totals = table_sizes()
    groups = []
    for model, table_filters in by_table.items():
        queryset = model._default_manager.all()
        searching = searched is not None and model is AppUser
        if searching:
            queryset = searched
        kinds = [filter_index(name, value) for name, value in table_filters]
        # One b-tree holds every filter's column (a range's two bounds, or one
        # equality): the group's keys come from that index alone. Two
        # columns (a name and a sign-up range) mean reading the table.
        columns = {CustomerFilter.base_filters[name].field_name for name, _ in table_filters}
        one_index = (
            not searching
            and all(kind == BTREE for kind in kinds)
            and (len(columns) == 1 or any(columns <= held for held in INDEXED_TOGETHER))
        )
        unseen = 1.0
        for (name, value), kind in zip(table_filters, kinds, strict=True):
            spec = CustomerFilter.base_filters[name]
            if kind == NO_INDEX and isinstance(spec, Substring):
                column = spec.field_name.rsplit("__", 1)[-1]
                if isinstance(spec, DistinctSubstring):
                    # Too many names contain the text to list them in the
                    # query; their statistics still estimate it.
                    values = spec.values_containing(value, limited=False)
                    queryset = queryset.filter(**{f"{column}__in": values})
                else:
                    # strpos() > 0 is a guess (a third of the rows); LIKE is
                    # estimated from the trigram index's statistics on
                    # UPPER(column), which PostgreSQL keeps for expression
                    # indexes, within what they can see (UNSEEN_SHARE).
                    like = {f"{column}__icontains": value}
                    queryset = queryset.filter(**like)
                    alone = planner_rows(model._default_manager.filter(**like))
                    floor = totals[model] * UNSEEN_SHARE
                    if alone < floor:
                        unseen *= floor / max(alone, 1)
                continue
            queryset = apply_on_own_table(name, queryset, value)
        rows, counted = min(totals[model], round(planner_rows(queryset) * unseen)), False
        # Only what one index answers is counted (see bounded_count).
        if rows <= COUNTED_ESTIMATES and one_index:
            rows, counted = bounded_count(queryset, rows)
        read = bitmaps = None
        if len(table_filters) > 1:
            # What each indexed filter reads on its own.
            reads = [
                planner_rows(apply_on_own_table(name, model._default_manager.all(), value))
                for (name, value), kind in zip(table_filters, kinds, strict=True)
                if kind != NO_INDEX
            ]
            read = min(reads, default=totals[model])
            if not searching and all(kind == BTREE for kind in kinds):
                bitmaps = sum(reads)
        # A set is read through an index; it must fit in work_mem.
        buildable = (searching or any(kind != NO_INDEX for kind in kinds)) and rows <= MAX_MEMBERS
        groups.append(
            Group(
                TABLES[model],
                rows,
                totals[model],
                one_index,
                buildable,
                exact=counted,
                read=read,
                bitmaps=bitmaps,
            )
        )
    return groups, totals[AppUser]


#: Filter columns that one b-tree holds together (see core.models):
#: ``address_country_id`` is (country, city, id).
INDEXED_TOGETHER = ({"address__country", "address__city"},)

#: The share of rows below which the planner cannot tell a substring from a
#: rare one: its histogram holds 101 of the column's values (the default
#: statistics target), and a substring in 1.4% of phone numbers ("2 4") was
#: in none of them after one ANALYZE (estimated at 300 customers, not
#: 42,491: the list then sorted the 1.2M customers born since 1980 to find
#: 17,019, and timed out). A substring without a trigram is a character or
#: two: it is taken to be at least this common.
UNSEEN_SHARE = 0.02

#: Below this planner estimate, a table's range and equality filters are
#: counted instead (see :func:`bounded_count`).
COUNTED_ESTIMATES = 50_000
#: How far such a count goes before it settles for the estimate.
COUNT_LIMIT = 10_000


def bounded_count(queryset: QuerySet, estimate: int) -> tuple[int, bool]:
    """(rows of ``queryset`` counted up to COUNT_LIMIT, True), else
    (``estimate``, at least the limit, False).

    The planner's histograms cut a column into 100 buckets: at 3M rows, a
    points range in the thinly populated tail ("100,000 points or more") is
    estimated within a bucket of 30,000 customers, and ``points >= 68462``
    comes out at 12,773 where 1,200 match. A range or an equality on a b-tree
    column counts straight from the index (an index-only scan: 10,000 entries
    in about a millisecond), and the count is exact.
    """
    counted = queryset.values("pk")[: COUNT_LIMIT + 1].count()
    if counted <= COUNT_LIMIT:
        return counted, True
    return max(estimate, counted), False


#: How long a process trusts the table sizes it read (seconds): sizes only
#: weigh plans against each other, and they change by loads, not by requests.
TABLE_SIZES_SECONDS = 60
_table_sizes: dict[str, tuple[float, dict[type[Model], int]]] = {}


def table_sizes() -> dict[type[Model], int]:
    """Rows per table, as ANALYZE last counted them (pg_class, no scan; read
    once a minute per process and database)."""
    alias = read_alias()
    read_at, sizes = _table_sizes.get(alias, (0.0, {}))
    if time.monotonic() - read_at < TABLE_SIZES_SECONDS:
        return sizes
    models = (AppUser, Address, CustomerRelationship)
    with connections[alias].cursor() as cursor:
        cursor.execute(
            "SELECT relname, reltuples::bigint FROM pg_class WHERE relname = ANY(%s)",
            [[m._meta.db_table for m in models]],
        )
        found = dict(cursor.fetchall())
    # -1: never analyzed (a fresh table); a small guess keeps plans simple.
    sizes = {m: max(1, found.get(m._meta.db_table, 1)) for m in models}
    _table_sizes[alias] = (time.monotonic(), sizes)
    return sizes


def customer_detail(pk: int) -> dict[str, Any] | None:
    """One customer, exactly as the list shows them (the same query, one row)."""
    ordering = customer_ordering(None)
    page = keyset_page(customer_list(filters={"id": pk}), ordering, size=1)
    return customer_rows(page.rows)[0] if page.rows else None


def customer_for_update(pk: int) -> AppUser | None:
    """The customer with their address and record loaded, as the write services take them.

    Not locked: the services write in their own transaction, and a write
    request reads the primary (see crm.replicas).
    """
    return AppUser.objects.select_related("address", "relationship").filter(pk=pk).first()
