from django.urls import path

from .bulk_views import CustomerBulkUpdateApi, CustomerImportApi
from .history_views import CustomerEraseApi, CustomerHistoryApi, CustomerPersonalDataApi
from .views import CustomerDetailApi, CustomerExportApi, CustomerListApi

urlpatterns = [
    path("users/", CustomerListApi.as_view(), name="customer-list"),
    path("users/export/", CustomerExportApi.as_view(), name="customer-export"),
    path("users/import/", CustomerImportApi.as_view(), name="customer-import"),
    path("users/bulk-update/", CustomerBulkUpdateApi.as_view(), name="customer-bulk-update"),
    path("users/<int:pk>/", CustomerDetailApi.as_view(), name="customer-detail"),
    path("users/<int:pk>/history/", CustomerHistoryApi.as_view(), name="customer-history"),
    path(
        "users/<int:pk>/personal-data/",
        CustomerPersonalDataApi.as_view(),
        name="customer-personal-data",
    ),
    path("users/<int:pk>/erase/", CustomerEraseApi.as_view(), name="customer-erase"),
]
