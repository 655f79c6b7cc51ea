from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from crm.api_docs import RedocPage, SwaggerPage, redoc_bundle

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("core.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SwaggerPage.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", RedocPage.as_view(url_name="schema"), name="redoc"),
    path("api/redoc/redoc.standalone.js", redoc_bundle, name="redoc-bundle"),
]

if settings.CRM_BENCHMARKS:
    # The original's list view, for bench_list to race (see bench.baseline).
    urlpatterns.append(path("api/", include("bench.urls")))

handler400 = "crm.views.bad_request"
handler404 = "crm.views.not_found"
handler500 = "crm.views.server_error"
