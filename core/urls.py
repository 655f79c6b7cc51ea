from django.urls import path

from .api import CustomerListApi

urlpatterns = [
    path("users/", CustomerListApi.as_view(), name="customer-list"),
]
