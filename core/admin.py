"""The Django admin, usable at millions of rows.

Django's defaults each cost a scan of the table at this size: the paginator's
``COUNT(*)``, the "N total" link's second ``COUNT(*)``, a list filter's
``SELECT DISTINCT``, the filters' "Show counts" (a count per option), and a
select box of every address on the change form. Each is replaced below by
something an index answers, or turned off.

The customers' changelist reads the list's read table (``core_customer_list``,
one row per customer with their address and record: no join per row, and an
index for every sortable column), and searches with the API's search, ranked
the same way; its links, selections and actions act on the customers
(:class:`CustomerChangeList`). Their change form edits the three tables of
record, whose triggers keep the read table.
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, SEARCH_VAR, ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.html import format_html

from .customers import plans
from .customers.ordering import SEARCH_RANK
from .customers.search import search_match, search_words
from .models import Address, AppUser, CustomerRelationship, CustomerRow, SearchTerm
from .security.admin_login import ThrottledAuthenticationForm

#: The API's limit on ``search`` (core.api.params): longer text is cut.
SEARCH_MAX_LENGTH = 100


class EstimatedCountPaginator(Paginator):
    """A paginator that counts as the API does (:func:`core.customers.plans.bounded_count`):
    exactly up to ``CRM_EXACT_COUNT_THRESHOLD`` (counting stops just past
    it), the planner's estimate above, said "about"."""

    count_is_estimate = False

    @cached_property
    def count(self) -> int:
        threshold = plans.exact_count_threshold()
        counted = self.object_list.values("pk")[: threshold + 1].count()
        estimated = planner_rows(self.object_list) if counted > threshold else counted
        count, self.count_is_estimate = plans.bounded_count(counted, estimated, threshold)
        return count


def planner_rows(queryset: QuerySet) -> int:
    """The planner's estimate of the rows ``queryset`` returns (EXPLAIN, no execution)."""
    sql, params = queryset.values("pk").query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class LargeTableChangeList(ChangeList):
    """What the changelist templates (crm/templates/admin/core/) need to say
    "about 100,000" for an estimate, and to offer to clear a search."""

    @property
    def count_is_estimate(self) -> bool:
        return getattr(self.paginator, "count_is_estimate", False)

    @property
    def clear_search_url(self) -> str:
        return self.get_query_string(remove=[SEARCH_VAR, PAGE_VAR])


class LargeTableAdmin(admin.ModelAdmin):
    """A changelist that never counts a whole table: estimated page counts,
    no "N total" link (Django's second ``COUNT(*)``) and no facet counts
    (one exact ``COUNT`` per filter option: 1.15 s at 100,000 customers)."""

    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ["-pk"]

    def get_changelist(self, request, **kwargs) -> type[ChangeList]:
        return LargeTableChangeList

    def get_changelist_instance(self, request) -> ChangeList:
        # PostgreSQL text cannot hold a NUL byte: a query with one is a
        # database error (a 500) wherever it reaches SQL, so refuse it the
        # way Django refuses any unusable lookup (a redirect to ?e=1).
        if any("\x00" in key + value for key, values in request.GET.lists() for value in values):
            raise IncorrectLookupParameters("a NUL byte in the query string")
        return super().get_changelist_instance(request)


class CountryFilter(admin.SimpleListFilter):
    """The known countries (SearchTerm) instead of ``SELECT DISTINCT`` over 3M rows."""

    title = "country"
    parameter_name = "country"
    lookup = "country"

    def lookups(self, request, model_admin):
        countries = SearchTerm.objects.filter(field="country").order_by("value")
        return [(value, value) for value in countries.values_list("value", flat=True)]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        if self.value() not in dict(self.lookup_choices):
            raise IncorrectLookupParameters(f"no customer lives in {self.value()!r}")
        return queryset.filter(**{self.lookup: self.value()})


class CustomerChangeList(LargeTableChangeList):
    """The customers' changelist, read from the read table: the rows are
    :class:`core.models.CustomerRow` objects, whose primary key is the
    customer's, so that links and selections name the customers."""

    def get_queryset(self, request, exclude_parameters=None):
        self.root_queryset = CustomerRow.objects.all()
        # Nothing to join: the read table holds the address and the record.
        self.list_select_related = False
        return super().get_queryset(request, exclude_parameters)


class RelationshipInline(admin.StackedInline):
    model = CustomerRelationship
    can_delete = False
    min_num = 1
    max_num = 1
    readonly_fields = ["created"]


@admin.register(AppUser)
class AppUserAdmin(LargeTableAdmin):
    # Fits 1280 pixels beside the navigation and the filters: the gender is
    # a filter (and on the change form) rather than a column.
    list_display = [
        "id",
        "customer_id",
        "first_name",
        "last_name",
        "city",
        "points",
        "signed_up",
    ]
    list_display_links = ["id", "customer_id"]
    # Searched through the API's search (get_search_results below); Django
    # needs a search field to show the search box.
    search_fields = ["last_name"]
    search_help_text = (
        "Names (typos forgiven: jon smith finds John Smith), customer number, phone number "
        "or city; the closest first unless you sort by a column."
    )
    list_filter = ["gender", CountryFilter]
    raw_id_fields = ["address"]
    inlines = [RelationshipInline]
    readonly_fields = ["created", "last_updated"]

    def get_changelist(self, request, **kwargs) -> type[ChangeList]:
        return CustomerChangeList

    def customers_of(self, objects) -> QuerySet:
        """The customers behind the changelist's rows (or the customers given)."""
        if isinstance(objects, QuerySet) and objects.model is CustomerRow:
            return AppUser.objects.filter(pk__in=objects.values("pk"))
        return objects

    def get_deleted_objects(self, objs, request):
        return super().get_deleted_objects(self.customers_of(objs), request)

    def delete_queryset(self, request, queryset: QuerySet) -> None:
        super().delete_queryset(request, self.customers_of(queryset))

    def get_search_results(self, request, queryset: QuerySet, search_term: str):
        """The API's search, closest first unless a column was clicked to sort."""
        text = search_term[:SEARCH_MAX_LENGTH]
        if not search_words(text):
            return queryset, False
        queryset = search_match(text).apply(queryset)
        if ORDER_VAR not in request.GET:
            queryset = queryset.order_by(f"-{SEARCH_RANK}", "-pk")
        return queryset, False

    @admin.display(ordering="city")
    def city(self, customer: CustomerRow) -> str:
        return customer.city

    @admin.display(ordering="created", description="created")
    def signed_up(self, customer: CustomerRow) -> str:
        """The day (2025-01-07, UTC; the time in its tooltip), on one line,
        where Django's "Jan. 7, 2025, 3:04 p.m." was cut off at 1280 pixels."""
        return format_html(
            '<time datetime="{}" title="{}" style="white-space: nowrap">{}</time>',
            customer.created.isoformat(),
            customer.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            customer.created.strftime("%Y-%m-%d"),
        )

    @admin.display(ordering="points")
    def points(self, customer: CustomerRow) -> int | None:
        return customer.points


@admin.register(Address)
class AddressAdmin(LargeTableAdmin):
    list_display = ["id", "street", "street_number", "city_code", "city", "country"]
    search_fields = ["city", "country", "=city_code"]
    list_filter = [CountryFilter]


@admin.register(CustomerRelationship)
class CustomerRelationshipAdmin(LargeTableAdmin):
    list_display = ["appuser", "points", "created", "last_activity"]
    list_select_related = ["appuser"]
    raw_id_fields = ["appuser"]


# Failed sign-ins are limited (CRM_THROTTLE_LOGIN).
admin.site.login_form = ThrottledAuthenticationForm
