"""Under a sequence's step, with or without the trailing slash like the other sequence routes."""

from __future__ import annotations

from django.urls import path

from experiments import api
from sequences.api_urls import SEQUENCE, either_slash

STEP = rf"{SEQUENCE}/steps/(?P<step_id>[0-9]{{1,18}})"

urlpatterns = [
    either_slash(f"{STEP}/experiment", api.ExperimentApi.as_view(), "experiment-item"),
    either_slash(f"{STEP}/experiment/results", api.ExperimentResultsApi.as_view(), "experiment-results"),
    path("experiments/sample-size/", api.SampleSizeApi.as_view(), name="experiment-sample-size"),
]
