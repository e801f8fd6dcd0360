from django.apps import AppConfig


class DeliverabilityConfig(AppConfig):
    name = "deliverability"
    verbose_name = "Deliverability"

    def ready(self) -> None:
        # Provider webhooks arrive as django-anymail's signals: the edge where a third party's
        # events enter, not a way for our own apps to talk.
        from anymail.signals import inbound, tracking
        from django.core import checks

        from deliverability import webhooks

        tracking.connect(webhooks.tracking_received, dispatch_uid="deliverability.webhooks.tracking")
        inbound.connect(webhooks.inbound_received, dispatch_uid="deliverability.webhooks.inbound")
        checks.register(webhooks.webhook_secret_check, checks.Tags.security, deploy=True)
