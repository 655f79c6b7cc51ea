from django.conf import settings
from django.urls import path

from .api import CustomerDetailApi, CustomerExportApi, CustomerListApi
from .baseline import BaselineCustomerListApi

urlpatterns = [
    path("users/", CustomerListApi.as_view(), name="customer-list"),
    path("users/export/", CustomerExportApi.as_view(), name="customer-export"),
    path("users/<int:pk>/", CustomerDetailApi.as_view(), name="customer-detail"),
]

if settings.CRM_BASELINE_API:
    # The original's implementation, for bench_list to race (see core.baseline).
    urlpatterns.append(
        path("baseline/users/", BaselineCustomerListApi.as_view(), name="baseline-customer-list")
    )
