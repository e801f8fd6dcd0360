from __future__ import annotations

from django.urls import include, path, re_path, register_converter
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from api import views
from api.fields import IdConverter

register_converter(IdConverter, "id")

v1 = [
    path("auth/token/", views.TokenObtainApi.as_view(), name="token-obtain"),
    path("auth/token/refresh/", views.TokenRefreshApi.as_view(), name="token-refresh"),
    path("", include("sequences.api_urls")),
    path("", include("subscribers.api_urls")),
    path("", include("subscribers.imports_api_urls")),
    path("", include("organizations.api_urls")),
    path("", include("delivery.api_urls")),
    path("", include("deliverability.api_urls")),
    path("", include("analytics.api_urls")),
    path("", include("analytics.customer_urls")),
    path("", include("experiments.api_urls")),
]

urlpatterns = [
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include((v1, "api"), namespace="api")),
    re_path(r"^api/", views.api_not_found),
]
