from __future__ import annotations

from django.urls import path

from organizations import api

urlpatterns = [
    path("api-keys/", api.ApiKeyCollectionApi.as_view(), name="api-key-collection"),
    path("api-keys/<id:api_key_id>/", api.ApiKeyItemApi.as_view(), name="api-key-item"),
    path("api-keys/<id:api_key_id>/revoke/", api.ApiKeyRevokeApi.as_view(), name="api-key-revoke"),
    path("members/", api.MemberCollectionApi.as_view(), name="member-collection"),
    path("members/<id:member_id>/", api.MemberItemApi.as_view(), name="member-item"),
    path("organization/", api.OrganizationApi.as_view(), name="organization"),
]
