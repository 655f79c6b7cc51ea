"""The original system's list endpoint, kept as a real view so that the benchmark can race it.

This is deliberately the straightforward DRF implementation the original
used: a ``ListAPIView`` over ``select_related`` (which left-joins the loyalty
record), a nested ``ModelSerializer`` per row, ``PageNumberPagination`` with an
exact ``COUNT(*)``, plain ``icontains`` filters under their ORM names
(``last_name__icontains``), and an ``OrderingFilter`` without a tie-breaker.
It is routed at ``/api/baseline/users/`` only where the ``bench`` app is
installed (``CRM_BENCHMARKS``: developer machines, never production) and is
left out of the OpenAPI schema.
Do not copy it: :mod:`core.api` is the product.
"""

from __future__ import annotations

import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import filters, generics
from rest_framework.pagination import PageNumberPagination

from core.api.serializers import CustomerSerializer
from core.models import AppUser


class BaselinePagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class BaselineFilter(django_filters.FilterSet):
    class Meta:
        model = AppUser
        fields = {
            "first_name": ["icontains"],
            "last_name": ["icontains"],
            "phone_number": ["icontains"],
            "gender": ["exact"],
            "customer_id": ["exact"],
            "created": ["gte", "lte"],
            "address__city": ["icontains"],
            "address__country": ["icontains"],
            "relationship__points": ["gte", "lte"],
        }


@extend_schema(exclude=True)
class BaselineCustomerListApi(generics.ListAPIView):
    queryset = AppUser.objects.select_related("address", "relationship").order_by("id")
    serializer_class = CustomerSerializer
    pagination_class = BaselinePagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_class = BaselineFilter
    ordering_fields = [
        "id",
        "first_name",
        "last_name",
        "created",
        "address__city",
        "relationship__points",
    ]
