from django.urls import path

from .views import CustomerDetailApi, CustomerExportApi, CustomerListApi

urlpatterns = [
    path("users/", CustomerListApi.as_view(), name="customer-list"),
    path("users/export/", CustomerExportApi.as_view(), name="customer-export"),
    path("users/<int:pk>/", CustomerDetailApi.as_view(), name="customer-detail"),
]
