from __future__ import annotations

from django.db import models

from organizations.tenancy import TenantModel


class IdempotencyRecord(TenantModel):
    """The first answer to a create request that carried an `Idempotency-Key` header.

    A retry with the same key (from the same caller) gets the stored answer instead of creating
    again. The row is inserted in the same transaction as the view's writes, before the view
    runs: a concurrent retry waits on the unique index until the first commits, then replays its
    answer; a request that fails stores nothing and may be retried.
    """

    id = models.BigAutoField(primary_key=True)
    # "key:<api key id>" or "user:<user id>": keys are private to the caller that sent them.
    caller = models.CharField(max_length=64)
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=500)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    response_body = models.JSONField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "caller", "key"], name="one_record_per_idempotency_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}] → {self.status_code}"
