from __future__ import annotations

from django.urls import path

from subscribers import api

urlpatterns = [
    path("tags/", api.TagCollectionApi.as_view(), name="tag-collection"),
    path("tags/<id:tag_id>/", api.TagItemApi.as_view(), name="tag-item"),
]
