from django.conf import settings
from django.urls import path

from .api import CustomerListApi
from .baseline import BaselineCustomerListApi

urlpatterns = [
    path("users/", CustomerListApi.as_view(), name="customer-list"),
]

if settings.CRM_BASELINE_API:
    # The original's implementation, for bench_list to race (see core.baseline).
    urlpatterns.append(
        path("baseline/users/", BaselineCustomerListApi.as_view(), name="baseline-customer-list")
    )
