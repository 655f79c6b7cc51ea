from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "core"
    verbose_name = "CRM"

    def ready(self) -> None:
        from core.dataset.cleanup import stray_shadows_drop_after_migrate
        from crm.observability.health import Requirement, require

        # The planning sample is read before a process serves, and /readyz is
        # not ready without it (core.customers.sample). Imported when used:
        # commands that serve nothing need not load NumPy.
        require(
            Requirement(
                "planning_sample",
                load=_sample_load,
                loaded=lambda: _samples().prepared(),
                follow=lambda: _sample_module().follow_replacements(),
            )
        )
        # Then the API's commonest paths, once, so that a fresh worker's first
        # requests cost what later ones do (core.api.warm_up).
        require(
            Requirement(
                "api_paths",
                load=lambda reason: _warm_up().api_paths_warm(reason),
                loaded=lambda: _warm_up().api_paths_warmed(),
            )
        )

        post_migrate.connect(
            stray_shadows_drop_after_migrate,
            sender=self,
            dispatch_uid="core.dataset.stray_shadows_drop",
        )


def _sample_module():
    from core.customers import sample

    return sample


def _samples():
    return _sample_module().samples


def _sample_load(reason: str) -> None:
    """Read the planning sample under the requests' lock timeout: a worker
    that starts while a migration holds the customer tables gives up after
    CRM_LOCK_TIMEOUT_MS (not ready; the probe tries again) instead of
    waiting for the migration with no limit. The read's own statement
    timeout is the sample's (core.customers.sample.read_sample)."""
    from core.security.middleware import session_limits_apply

    session_limits_apply()
    _samples().prepare(reason)


def _warm_up():
    from core.api import warm_up

    return warm_up
