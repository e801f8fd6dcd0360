from __future__ import annotations

from django.urls import path

from delivery import api

urlpatterns = [
    path("delivery-routes/", api.RouteCollectionApi.as_view(), name="delivery-route-collection"),
    path("delivery-routes/<id:route_id>/", api.RouteItemApi.as_view(), name="delivery-route-item"),
    path("delivery-routes/<id:route_id>/reset/", api.RouteResetApi.as_view(), name="delivery-route-reset"),
]
