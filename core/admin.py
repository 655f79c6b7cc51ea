"""The Django admin, usable at millions of rows.

Django's defaults each cost a scan of the table at this size: the paginator's
``COUNT(*)``, the "N total" link's second ``COUNT(*)``, a list filter's
``SELECT DISTINCT``, and a select box of every address on the change form.
Each is replaced below by something an index answers.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

from .customers.distinct import distinct_values
from .customers.pagination import customer_count
from .customers.search import search_terms_add
from .customers.selectors import customer_list
from .models import Address, AppUser, CustomerRelationship
from .security.admin_login import ThrottledAuthenticationForm


class EstimatedCountPaginator(Paginator):
    """A paginator whose count is the planner's estimate when it is large
    (exact below ``CRM_EXACT_COUNT_THRESHOLD``), as in the API."""

    @cached_property
    def count(self) -> int:
        result = customer_count(
            self.object_list, "estimated", exact_threshold=settings.CRM_EXACT_COUNT_THRESHOLD
        )
        return result.value or 0


class LargeTableAdmin(admin.ModelAdmin):
    """A changelist that never counts a whole table: estimated page counts,
    and no "N total" link (Django's second ``COUNT(*)``)."""

    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    ordering = ["-pk"]


class CountryFilter(admin.SimpleListFilter):
    """Countries from the (country, id) index instead of ``SELECT DISTINCT`` over 3M rows."""

    title = "country"
    parameter_name = "country"
    lookup = "address__country"

    def lookups(self, request, model_admin):
        return [(value, value) for value in distinct_values("core_address", "country")]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        if self.value():
            return queryset.filter(**{self.lookup: self.value()})
        return queryset


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
    list_display = [
        "id",
        "customer_id",
        "first_name",
        "last_name",
        "gender",
        "city",
        "points",
        "created",
    ]
    list_display_links = ["id", "customer_id"]
    # The address and the loyalty record come in the same query as the customer.
    list_select_related = ["address", "relationship"]
    # icontains: UPPER(col) LIKE UPPER('%…%'), served by the trigram indexes.
    search_fields = ["last_name", "first_name", "customer_id", "phone_number"]
    list_filter = ["gender", CountryFilter]
    raw_id_fields = ["address"]
    inlines = [RelationshipInline]
    readonly_fields = ["created", "last_updated"]

    def get_queryset(self, request) -> QuerySet:
        return customer_list().select_related("address", "relationship")

    def save_model(self, request, obj: AppUser, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        search_terms_add(obj)

    @admin.display(ordering="address__city")
    def city(self, customer: AppUser) -> str:
        return customer.address.city

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
