"""Customer analytics routes, answering with or without the trailing slash like the sequence routes."""

from __future__ import annotations

from analytics import customer_api as api
from sequences.api_urls import either_slash

urlpatterns = [
    either_slash("analytics/cohorts", api.CustomerCohortsApi.as_view(), "customer-cohorts"),
    either_slash("analytics/rfm", api.CustomerRfmApi.as_view(), "customer-rfm"),
    either_slash("analytics/lifetime-value", api.CustomerLifetimeValueApi.as_view(), "customer-lifetime-value"),
    either_slash("analytics/attribution", api.CustomerAttributionApi.as_view(), "customer-attribution"),
]
