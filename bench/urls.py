from django.urls import path

from .baseline import BaselineCustomerListApi

urlpatterns = [
    path("baseline/users/", BaselineCustomerListApi.as_view(), name="baseline-customer-list"),
]
