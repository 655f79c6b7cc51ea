from django.apps import AppConfig


class BenchConfig(AppConfig):
    """The benchmarks: installed on developer machines only (``CRM_BENCHMARKS``)."""

    name = "bench"
    verbose_name = "CRM benchmarks"
