from django.apps import AppConfig


class EmailseqConfig(AppConfig):
    name = "emailseq"
    verbose_name = "emailseq"

    def ready(self) -> None:
        from emailseq import checks  # noqa: F401 - registers the system checks
