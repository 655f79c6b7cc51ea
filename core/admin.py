"""The Django admin, usable at millions of rows.

Django's defaults each cost a scan of the table at this size: the paginator's
``COUNT(*)``, the "N total" link's second ``COUNT(*)``, a list filter's
``SELECT DISTINCT``, the filters' "Show counts" (a count per option), and a
select box of every address on the change form. Each is replaced below by
something an index answers, or turned off. The customers' search is the
API's (:func:`core.customers.search.customer_search`), ranked the same way.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, SEARCH_VAR, ChangeList
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property
from django.utils.html import format_html

from .customers.distinct import distinct_values
from .customers.ordering import SEARCH_RANK
from .customers.pagination import customer_count
from .customers.search import customer_search, search_words
from .customers.selectors import customer_list
from .models import Address, AppUser, CustomerRelationship
from .security.admin_login import ThrottledAuthenticationForm

#: The API's limit on ``search`` (core.api.params): longer text is cut.
SEARCH_MAX_LENGTH = 100


class EstimatedCountPaginator(Paginator):
    """A paginator whose count is the planner's estimate when it is large
    (exact below ``CRM_EXACT_COUNT_THRESHOLD``), as in the API."""

    count_is_estimate = False

    @cached_property
    def count(self) -> int:
        result = customer_count(
            self.object_list, "estimated", exact_threshold=settings.CRM_EXACT_COUNT_THRESHOLD
        )
        self.count_is_estimate = result.is_estimate
        return result.value or 0


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
    """Countries from the (country, id) index instead of ``SELECT DISTINCT`` over 3M rows."""

    title = "country"
    parameter_name = "country"
    lookup = "address__country"

    def lookups(self, request, model_admin):
        return [(value, value) for value in distinct_values("core_address", "country")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value() is None:
            return queryset
        if self.value() not in dict(self.lookup_choices):
            raise IncorrectLookupParameters(f"no customer lives in {self.value()!r}")
        return queryset.filter(**{self.lookup: self.value()})


class AddressCountryFilter(CountryFilter):
    lookup = "country"


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
    # The address and the loyalty record come in the same query as the customer.
    list_select_related = ["address", "relationship"]
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

    def get_queryset(self, request) -> QuerySet:
        return customer_list().select_related("address", "relationship")

    def get_search_results(self, request, queryset: QuerySet, search_term: str):
        """The API's search, closest first unless a column was clicked to sort."""
        text = search_term[:SEARCH_MAX_LENGTH]
        if not search_words(text):
            return queryset, False
        queryset = customer_search(queryset, text)
        if ORDER_VAR not in request.GET:
            queryset = queryset.order_by(f"-{SEARCH_RANK}", "-pk")
        return queryset, False

    @admin.display(ordering="address__city")
    def city(self, customer: AppUser) -> str:
        return customer.address.city

    @admin.display(ordering="created", description="created")
    def signed_up(self, customer: AppUser) -> str:
        """The day (2025-01-07, UTC; the time in its tooltip), on one line,
        where Django's "Jan. 7, 2025, 3:04 p.m." was cut off at 1280 pixels."""
        return format_html(
            '<time datetime="{}" title="{}" style="white-space: nowrap">{}</time>',
            customer.created.isoformat(),
            customer.created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            customer.created.strftime("%Y-%m-%d"),
        )

    @admin.display(ordering="relationship__points")
    def points(self, customer: AppUser) -> int | None:
        record = getattr(customer, "relationship", None)
        return record.points if record else None


@admin.register(Address)
class AddressAdmin(LargeTableAdmin):
    list_display = ["id", "street", "street_number", "city_code", "city", "country"]
    search_fields = ["city", "country", "=city_code"]
    list_filter = [AddressCountryFilter]


@admin.register(CustomerRelationship)
class CustomerRelationshipAdmin(LargeTableAdmin):
    list_display = ["appuser", "points", "created", "last_activity"]
    list_select_related = ["appuser"]
    raw_id_fields = ["appuser"]


# Failed sign-ins are limited (CRM_THROTTLE_LOGIN).
admin.site.login_form = ThrottledAuthenticationForm
