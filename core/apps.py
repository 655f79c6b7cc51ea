from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "core"
    verbose_name = "CRM"

    def ready(self) -> None:
        from core.dataset.cleanup import stray_shadows_drop_after_migrate

        post_migrate.connect(
            stray_shadows_drop_after_migrate,
            sender=self,
            dispatch_uid="core.dataset.stray_shadows_drop",
        )
