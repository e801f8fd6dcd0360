from __future__ import annotations

from django.urls import path

from subscribers import imports_api

urlpatterns = [
    path("imports/", imports_api.ImportCollectionApi.as_view(), name="import-collection"),
    path("imports/<id:import_id>/", imports_api.ImportItemApi.as_view(), name="import-item"),
    path(
        "imports/<id:import_id>/rejections/",
        imports_api.ImportRejectionCollectionApi.as_view(),
        name="import-rejection-collection",
    ),
    path("exports/contacts/", imports_api.ContactExportApi.as_view(), name="contact-export"),
]
