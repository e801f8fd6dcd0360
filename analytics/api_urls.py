from __future__ import annotations

from analytics import api
from sequences.api_urls import SEQUENCE, either_slash

urlpatterns = [
    either_slash(f"{SEQUENCE}/analytics", api.SequenceAnalyticsApi.as_view(), "sequence-analytics"),
]
