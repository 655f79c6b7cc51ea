"""The Django admin, usable at millions of rows, writing as the API writes.

Django's defaults each cost a scan of the table at this size: the paginator's
``COUNT(*)``, the "N total" link's second ``COUNT(*)``, a list filter's
``SELECT DISTINCT``, the filters' "Show counts" (a count per option), a
select box of every address on the change form, and a sort by any column
of a table of record (no index but the key: 735 ms for the loyalty records
by points at 1M). Each is replaced below by something an index answers, or
turned off.

Both changelists read the list's read table (``core_customer_list``, one row
per customer with their address and record: no join per row, and an index
for every sortable column), sort as the API sorts and search with the API's
search, ranked the same way (:class:`ReadTableChangeList`): the customers,
and the loyalty records (the customers who have one). Their links,
selections and actions act on the customers.

A customer's page edits the customer, their address and their loyalty
record in one form and writes them through the API's write services, with
the API's ``If-Match`` (:class:`CustomerFormBase`). Addresses have no page
or list of their own: each is its customer's (several customers share one
only in data written around the services), found by finding the customer
(their name, number, e-mail, phone or city in the search; their country in
the filter) and edited on the customer's page.
"""

from __future__ import annotations

import datetime as dt
import json
from contextlib import suppress

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.options import FORMFIELD_FOR_DBFIELD_DEFAULTS, IncorrectLookupParameters
from django.contrib.admin.utils import display_for_value
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, SEARCH_VAR, ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, transaction
from django.db.models import QuerySet
from django.forms.models import model_to_dict
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.translation import gettext

from .customers import plans, services
from .customers.ordering import SEARCH_RANK, TABLE, InvalidOrdering, customer_ordering, public_name
from .customers.search import search_match, search_words
from .customers.selectors import customer_detail, customer_for_update
from .customers.versions import customer_version
from .history import selectors as history_selectors
from .history import services as history_services
from .history.context import request_writer
from .models import AppUser, CustomerRelationship, CustomerRow, SearchTerm
from .read_table import Join
from .security.admin_login import ThrottledAuthenticationForm
from .security.permissions import ERASE, READ_HISTORY

#: The API's limit on ``search`` (core.api.params): longer text is cut.
SEARCH_MAX_LENGTH = 100
#: Events on a page of a customer's history in the admin.
HISTORY_PAGE = 100


def customer_pk(text: str) -> int:
    """A customer's id from a URL, or a 404."""
    try:
        return int(text)
    except ValueError:
        raise Http404("No customer with this id.") from None


class EstimatedCountPaginator(Paginator):
    """A paginator that counts as the API does (:func:`core.customers.plans.bounded_count`):
    exactly up to ``CRM_EXACT_COUNT_THRESHOLD`` (counting stops just past
    it), the planner's estimate above, said "about"."""

    count_is_estimate = False

    @cached_property
    def count(self) -> int:
        threshold = plans.exact_count_threshold()
        # Unordered: a count needs no order, and the search's ranking (an
        # ORDER BY kept in the counted subquery) would sort every match.
        counted = self.object_list.order_by().values("pk")[: threshold + 1].count()
        estimated = planner_rows(self.object_list) if counted > threshold else counted
        count, self.count_is_estimate = plans.bounded_count(counted, estimated, threshold)
        return count

    def _get_page(self, object_list: QuerySet, number: int, paginator: Paginator) -> Page:
        """A page read as the API reads one: the ids of its rows in order
        first, then those rows by key (Django's documented hook for a page).

        Ordering the matches needs only the columns they are filtered and
        ordered by, which their indexes hold: the search ranks the 25,000
        Viennese of 1M from the city index alone (an index-only scan), where
        asking for whole rows read 17,000 table pages to sort them (160 ms);
        and a deep page skips index entries, not rows.
        """
        ids = list(object_list.values_list("pk", flat=True))
        # The same rows as asked for (their joins, their annotations), by key.
        rows = self.object_list.order_by().in_bulk(ids)
        # A row deleted between the two statements is left out.
        return super()._get_page([rows[pk] for pk in ids if pk in rows], number, paginator)


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

    def action_checkbox(self, obj: models.Model) -> str:
        """Django's checkbox of a row, the same HTML written directly: rendered
        through the form widgets' templates it took a third of the Python time
        of a 50-row page."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            obj.pk,
            format_html(gettext("Select this object for an action - {}"), str(obj)),
        )

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


class ReadTableChangeList(LargeTableChangeList):
    """A changelist of the list's read table: its rows are
    :class:`core.models.CustomerRow` objects (the model admin's
    :meth:`ReadTableAdmin.read_rows`), whose primary key is the customer's,
    so that links and selections name the customers.

    It sorts as the API sorts: a clicked column becomes the API's ordering
    (:func:`core.customers.ordering.customer_ordering`), completed by the
    tie-breakers of the read table's b-tree that holds it (a city's customers
    by id, in the same direction), which a walk of that index yields page by
    page. Django would add ``-pk`` instead (``ORDER BY city, id DESC``),
    which no index holds: every customer of the first city, sorted. Columns
    clicked one after the other that no index holds together (city, then
    points) sort by the last clicked alone, as the API refuses them.
    """

    #: The columns the page is sorted by, as the API names them.
    sorted_by: frozenset[str] = frozenset()

    def get_queryset(self, request, exclude_parameters=None):
        self.root_queryset = self.model_admin.read_rows()
        # Nothing to join: the read table holds the address and the record.
        self.list_select_related = False
        return super().get_queryset(request, exclude_parameters)

    def get_ordering(self, request, queryset) -> list:
        requested = []
        for part in super().get_ordering(request, queryset):
            name = part.removeprefix("-") if isinstance(part, str) else None
            if name == "pk" and requested:
                continue  # Django's tie-breaker: the API's replaces it
            public = SORTED_AS.get("id" if name == "pk" else name)
            if public is not None:
                requested.append(("-" if part.startswith("-") else "") + public)
        try:
            ordering = customer_ordering(requested)
        except InvalidOrdering:
            ordering = customer_ordering(requested[:1])
        self.sorted_by = frozenset(field.removeprefix("-") for field in ordering.fields)
        return ordering.order_by()

    def get_ordering_field_columns(self) -> dict[int, str]:
        """The header's arrows: only the columns the page is sorted by."""
        columns = super().get_ordering_field_columns()
        return {
            index: direction
            for index, direction in columns.items()
            if index < len(self.list_display)
            and SORTED_AS.get(self.get_ordering_field(self.list_display[index])) in self.sorted_by
        }


#: The read table's sortable columns by the name the API sorts them by
#: (``city``: ``address__city``; ``id`` and ``pk``: ``id``).
SORTED_AS: dict[str, str] = {
    column.name: public_name(TABLE, column) for column in TABLE.columns if column.listed.sort
}


class ReadTableAdmin(LargeTableAdmin):
    """A changelist of customers read from the read table, searched with the API's search."""

    # Searched through the API's search (get_search_results below); Django
    # needs a search field to show the search box.
    search_fields = ["last_name"]
    search_help_text = (
        "Names (typos forgiven: jon smith finds John Smith), customer number, phone number "
        "or city; the closest first unless you sort by a column."
    )

    def read_rows(self) -> QuerySet:
        """The read table's rows this changelist lists."""
        return CustomerRow.objects.all()

    def get_changelist(self, request, **kwargs) -> type[ChangeList]:
        return ReadTableChangeList

    def get_search_results(self, request, queryset: QuerySet, search_term: str):
        """The API's search, closest first unless a column was clicked to sort."""
        text = search_term[:SEARCH_MAX_LENGTH]
        if not search_words(text):
            return queryset, False
        queryset = search_match(text).apply(queryset)
        if ORDER_VAR not in request.GET:
            queryset = queryset.order_by(f"-{SEARCH_RANK}", "-pk")
        return queryset, False


# -- the customer's page: customer, address and loyalty record, one form ------------


def editable_fields(join: Join) -> list[str]:
    """The fields of ``join``'s table that the read table shows and a person may set
    (not its key, its link to the customer, or a time the database stamps)."""
    return [
        column.source.name
        for column in join.columns
        if column.source.editable and not column.source.primary_key and not column.is_relation
    ]


def admin_form_field(field: models.Field) -> forms.Field:
    """The form field Django's admin makes for a model field (its widgets: a
    date picker, a split date and time), for a field of another model than the form's."""
    widgets = next(
        (
            FORMFIELD_FOR_DBFIELD_DEFAULTS[kind]
            for kind in type(field).__mro__
            if kind in FORMFIELD_FOR_DBFIELD_DEFAULTS
        ),
        {},
    )
    return field.formfield(**widgets)


#: The customer's own fields on the form, and their address's and loyalty
#: record's, by group (``address``, ``relationship``): what the API's row
#: shows of each, from the read table's declaration.
CUSTOMER_FIELDS: list[str] = editable_fields(TABLE.root)
GROUP_FIELDS: dict[str, list[str]] = {join.group: editable_fields(join) for join in TABLE.joins[1:]}
GROUP_MODELS: dict[str, type[models.Model]] = {join.group: join.model for join in TABLE.joins[1:]}


def form_name(group: str, name: str) -> str:
    """A group's field on the form, named as the API's orderings name it (``address__city``)."""
    return f"{group}__{name}"


class WriteRefused(Exception):
    """The write services refused the form's write (nothing was written):
    ``error`` says why, to show as the form's error."""

    def __init__(self, message: str | dict[str, list[str]]) -> None:
        super().__init__(message)
        self.error = forms.ValidationError(message)


class VersionField(forms.CharField):
    """The customer's version the form was shown with (the API's ``ETag``),
    sent back with it as the write's ``If-Match``. Never a change in itself."""

    widget = forms.HiddenInput

    def has_changed(self, initial, data) -> bool:
        return False


class CustomerFormBase(forms.ModelForm):
    """The customer's page: the customer, their address and their loyalty
    record in one form, written by the API's services.

    **Why one form, not inlines.** The address is the target of the
    customer's foreign key, not a row that points at the customer, so Django
    offers it no inline (only a raw id and a link); and an inline formset
    saves its rows itself, each by its own ``save()``. Here the address's and
    the record's fields are fields of the customer's form (``address__city``,
    ``relationship__points``: the groups and fields the API's row shows,
    from the declaration), and the form has one way to write:
    :meth:`write`, a call of :func:`~core.customers.services.customer_create`
    or :func:`~core.customers.services.customer_update`. The admin thus gets
    the API's semantics, not an imitation of them: the customer's row locked
    and read afresh, only the fields the editor changed written, a shared
    address copied rather than changed for the others living there,
    ``last_updated`` moved when the address or the record changes (and not
    when nothing does), deadlocks retried.

    **The version.** The form carries the customer's version as the API's
    ``ETag`` names it (:func:`~core.customers.versions.customer_version`),
    read when the page was shown *before* the values it shows (a write in
    between makes the save refused, never lets old values through), and
    writes with it as ``If-Match``: a customer changed by anyone since
    (the API, another editor, SQL) is not overwritten; the form says so.
    Only the fields that differ from the customer as stored are written, so
    without the check a value someone else changed meanwhile would be put
    back: the version is required.

    A write the services refuse (a stale version, a customer number taken
    meanwhile, writes that kept colliding) raises :class:`WriteRefused`
    from :meth:`write`; :class:`AppUserAdmin` shows it as this form's
    error (see :meth:`AppUserAdmin.changeform_view`).
    """

    version = VersionField(
        required=False,
        error_messages={
            "required": "The form lacks the version it was shown with; reload the page."
        },
    )

    #: A refusal of this very form's data by the services, shown as its error.
    refusal: forms.ValidationError | None = None

    class Meta:
        model = AppUser
        fields = CUSTOMER_FIELDS

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        pk = self.instance.pk
        if pk is not None and not self.is_bound:
            # The version first, then the values shown, so that the values are
            # at least as new as the version: a write in between refuses the
            # save instead of letting values older than the version through.
            self.initial["version"] = customer_version(customer_detail(pk))
            current = customer_for_update(pk)
            if current is not None:
                self.instance = current
                self.initial.update(model_to_dict(current, fields=CUSTOMER_FIELDS))
        for group, names in GROUP_FIELDS.items():
            stored = self.stored(group)
            for name in names:
                field = self.fields.get(form_name(group, name))
                if field is None:
                    continue  # a view-only form has none
                if stored is not None:
                    self.initial[form_name(group, name)] = getattr(stored, name)
                elif pk is not None:
                    # A customer without one: blank keeps it so, filled in creates it.
                    self.initial[form_name(group, name)] = None
                    field.required = False
        self.fields["version"].required = pk is not None

    def stored(self, group: str) -> models.Model | None:
        """The customer's address or record as stored (None: none, or a new customer)."""
        if self.instance.pk is None:
            return None
        return getattr(self.instance, group, None)

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.refusal is not None:
            raise self.refusal
        return cleaned

    def write(self) -> AppUser:
        """Create or change the customer, their address and record, through the services.

        Raises :class:`WriteRefused` when the services refuse (nothing written).
        """
        values = self.cleaned_data
        adding = self.instance.pk is None
        changed = set(self.changed_data)

        def given(name: str) -> bool:
            return adding or name in changed

        fields = {name: values[name] for name in CUSTOMER_FIELDS if given(name)}
        groups = {}
        for group, names in GROUP_FIELDS.items():
            model = GROUP_MODELS[group]
            group_values = {
                name: values[form_name(group, name)]
                for name in names
                if given(form_name(group, name))
                # Blank in a field the table holds NOT NULL: its default (a
                # new record's last activity is now), or left as it is.
                and not (
                    values[form_name(group, name)] is None and not model._meta.get_field(name).null
                )
            }
            groups[group] = group_values or None
        try:
            if adding:
                return services.customer_create(**groups, **fields)
            return services.customer_update(
                self.instance.pk, if_match=[values["version"]], **groups, **fields
            )
        except services.CustomerChanged:
            raise WriteRefused(
                "Not saved: someone changed this customer after you opened this page. "
                "Reload the page to see their change, then make yours again."
            ) from None
        except services.CustomerConflict as exc:
            raise WriteRefused(
                {exc.field: [f"A customer with this {exc.field} exists already."]}
            ) from None
        except services.CustomerWriteConflict:
            raise WriteRefused(
                "Not saved: concurrent writes of this customer kept colliding. Save again."
            ) from None


#: The customer's form, with their address's and record's fields declared
#: from those models' fields as Django's admin would make them (a column
#: added to the read table's declaration appears on the page unedited here).
CustomerForm = type(CustomerFormBase)(
    "CustomerForm",
    (CustomerFormBase,),
    {
        "__module__": __name__,
        "__doc__": CustomerFormBase.__doc__,
        **{
            form_name(group, name): admin_form_field(GROUP_MODELS[group]._meta.get_field(name))
            for group, names in GROUP_FIELDS.items()
            for name in names
        },
    },
)


@admin.register(AppUser)
class AppUserAdmin(ReadTableAdmin):
    """Customers: the read table's changelist, and a change form that edits
    the customer with their address and record through the services
    (:class:`CustomerFormBase`), and deletes through them (their address
    too, unless others live there)."""

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
    list_filter = ["gender", CountryFilter]
    form = CustomerForm
    readonly_fields = ["created", "last_updated", "relationship_created"]

    def get_queryset(self, request) -> QuerySet:
        # The change form's customer, with the address and record it shows.
        return super().get_queryset(request).select_related("address", "relationship")

    def get_fieldsets(self, request, obj: AppUser | None = None) -> list:
        """The customer's fields, then one group each for the address and the
        record; a view-only page shows each group on one line."""
        stamps = ["created", "last_updated"] if obj is not None else []
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": [*CUSTOMER_FIELDS, *stamps, *GROUP_FIELDS]})]
        fieldsets = [(None, {"fields": [*CUSTOMER_FIELDS, *stamps, "version"]})]
        for group, names in GROUP_FIELDS.items():
            options = {"fields": [form_name(group, name) for name in names]}
            if group == "relationship" and obj is not None:
                options["fields"].append("relationship_created")
            if group == "address" and obj is not None and self.address_is_shared(obj):
                options["description"] = (
                    "Other customers live at this address too: a change here gives this "
                    "customer an address of their own, and theirs stays as it is."
                )
            fieldsets.append((GROUP_MODELS[group]._meta.verbose_name.capitalize(), options))
        return fieldsets

    def address_is_shared(self, customer: AppUser) -> bool:
        # The appuser_address_id index: the address's other customers, if any.
        return (
            AppUser.objects.filter(address_id=customer.address_id).exclude(pk=customer.pk).exists()
        )

    @admin.display(description="record created")
    def relationship_created(self, customer: AppUser) -> str:
        record = getattr(customer, "relationship", None)
        return display_for_value(record and record.created, self.get_empty_value_display())

    def get_form(self, request, obj=None, change=False, **kwargs) -> type[forms.ModelForm]:
        form = super().get_form(request, obj, change, **kwargs)
        refusal = getattr(request, "customer_write_refused", None)
        if refusal is not None:
            form = type(form.__name__, (form,), {"refusal": refusal.error})
        return form

    def changeform_view(
        self, request, object_id=None, form_url="", extra_context=None
    ) -> HttpResponse:
        """Django's change form, with a refused write shown as the form's error.

        Django's admin saves after the form is valid and offers no way back
        to the form from there. A refused write (:class:`WriteRefused`)
        leaves the view's transaction, which rolls it back; the same request
        is then shown again, the refusal now the form's own error, so that
        the page shows what was posted and why it was not saved.
        """
        extra_context = {
            **(extra_context or {}),
            "can_read_personal_data": request.user.has_perms(READ_HISTORY),
            "can_erase": request.user.has_perms(ERASE),
        }
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except WriteRefused as refusal:
            request.customer_write_refused = refusal
            return super().changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj: AppUser, form: CustomerFormBase, change: bool) -> None:
        try:
            customer = form.write()
        except services.CustomerNotFound:
            # Deleted meanwhile: shown again, Django's admin says it no longer exists.
            raise WriteRefused("Not saved: the customer was deleted meanwhile.") from None
        obj.pk = customer.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change) -> None:
        """Nothing: the services wrote the address and the record with the customer."""

    def delete_model(self, request, obj: AppUser) -> None:
        with suppress(services.CustomerNotFound):  # gone meanwhile: as asked
            services.customer_delete(obj.pk)

    def customers_of(self, objects) -> QuerySet:
        """The customers behind the changelist's rows (or the customers given)."""
        if isinstance(objects, QuerySet) and objects.model is CustomerRow:
            return AppUser.objects.filter(pk__in=objects.values("pk"))
        return objects

    def get_deleted_objects(self, objs, request):
        """What deleting the customers deletes, and the permissions it needs:
        the customers' only (their records go with them, and nobody may
        delete a record alone: see :class:`CustomerRelationshipAdmin`)."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(
            self.customers_of(objs), request
        )
        perms_needed.discard(CustomerRelationship._meta.verbose_name)
        return deleted, counts, perms_needed, protected

    def delete_queryset(self, request, queryset: QuerySet) -> None:
        """The selected customers, each through the services, all or none."""
        with transaction.atomic():
            for pk in self.customers_of(queryset).values_list("pk", flat=True):
                with suppress(services.CustomerNotFound):
                    services.customer_delete(pk)

    # -- history, access and erasure (GDPR articles 15, 17 and 20) ---------------

    def get_urls(self) -> list:
        """A customer's personal data and erasure beside Django's own pages
        (whose history page shows PostgreSQL's history: :meth:`history_view`)."""
        view = self.admin_site.admin_view
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<int:pk>/personal-data/",
                view(self.personal_data_view),
                name="{}_{}_personal_data".format(*info),
            ),
            path("<int:pk>/erase/", view(self.erase_view), name="{}_{}_erase".format(*info)),
            *super().get_urls(),
        ]

    def history_view(self, request, object_id, extra_context=None) -> HttpResponse:
        """Every change of the customer as PostgreSQL recorded it, whoever
        wrote it (the API, this admin, a command, an import, SQL), newest
        first, :data:`HISTORY_PAGE` a page (``?before=`` an event's id), in
        place of Django's log of this admin's own edits. Needs
        ``core.view_history``, as the API's history does."""
        if not request.user.has_perms(READ_HISTORY):
            raise PermissionDenied
        pk = customer_pk(object_id)
        before = customer_pk(request.GET["before"]) if "before" in request.GET else None
        events = history_selectors.customer_events(pk, before=before, limit=HISTORY_PAGE + 1)
        customer = AppUser.objects.filter(pk=pk).first()
        if customer is None and not history_selectors.has_history(pk):
            raise Http404("No customer with this id, and no history of one.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"History of {customer or f'customer {pk}'}",
            "customer": customer,
            "customer_pk": pk,
            "events": events[:HISTORY_PAGE],
            "older": events[HISTORY_PAGE - 1]["id"] if len(events) > HISTORY_PAGE else None,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/core/appuser/customer_history.html", context)

    def personal_data_view(self, request, pk: int) -> HttpResponse:
        """Everything held about the customer, as the API's personal-data
        answer, downloaded as a JSON file (access and portability)."""
        if not request.user.has_perms(READ_HISTORY):
            raise PermissionDenied
        data = history_selectors.personal_data(pk)
        if data is None:
            raise Http404("No customer with this id.")
        response = JsonResponse(data, encoder=DjangoJSONEncoder, json_dumps_params={"indent": 2})
        response["Content-Disposition"] = f'attachment; filename="customer-{pk}.json"'
        response["Cache-Control"] = "no-store"
        return response

    def erase_view(self, request, pk: int) -> HttpResponse:
        """Erase the customer (the right to erasure, not a delete: their
        history, log entries and known values go too; see
        :func:`core.history.services.customer_erase`) after a confirmation
        page. Needs ``core.erase_appuser``, as the API's erasure does."""
        if not request.user.has_perms(ERASE):
            raise PermissionDenied
        customer = AppUser.objects.filter(pk=pk).first()
        if customer is None:
            raise Http404("No customer with this id.")
        if request.method == "POST":
            try:
                erased = history_services.customer_erase(pk, writer=request_writer())
            except services.CustomerNotFound:
                raise Http404("No customer with this id.") from None
            self.message_user(
                request,
                f"Customer {pk} erased, with {erased['events_removed']} events of their history.",
                messages.SUCCESS,
            )
            return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Are you sure?",
            "customer": customer,
        }
        return TemplateResponse(request, "admin/core/appuser/erase_confirmation.html", context)

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


@admin.register(CustomerRelationship)
class CustomerRelationshipAdmin(ReadTableAdmin):
    """Loyalty records, read from the read table: the customers who have one,
    to browse by points, last activity or name.

    Its rows were ``core_customerrelationship``'s, which has no index but
    its key: sorted by points, PostgreSQL sorted a million records (735 ms).
    The read table holds each customer's record with an index for each of
    its sortable fields. A record is edited on its customer's page, with the
    customer (every row links there).

    No search: a customer's record is found by finding the customer. Here
    the search would rank every match only after reading each one's row to
    see whether it has a record (no index holds that beside a name or a
    city): 25,000 rows for "vienna" at 1M, where the customers' search ranks
    them from the city index alone.
    """

    list_display = ["customer", "points", "last_activity", "record_created"]
    list_display_links = None  # the customer's column links to the customer
    search_fields = ()

    def read_rows(self) -> QuerySet:
        # The record's points are NOT NULL: null in the read table exactly
        # for a customer without a record.
        return CustomerRow.objects.filter(points__isnull=False)

    @admin.display(ordering="last_name", description="customer")
    def customer(self, row: CustomerRow) -> str:
        url = reverse("admin:core_appuser_change", args=[row.pk], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, row)

    @admin.display(description="record created")
    def record_created(self, row: CustomerRow) -> dt.datetime:
        # Not sortable: no index holds it (nobody asked to page by it).
        return row.relationship_created

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None) -> HttpResponse:
        """A record's page is its customer's (the record's key is the customer's id)."""
        return redirect("admin:core_appuser_change", object_id)


# Failed sign-ins are limited (CRM_THROTTLE_LOGIN).
admin.site.login_form = ThrottledAuthenticationForm
