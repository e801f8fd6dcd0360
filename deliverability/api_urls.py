from __future__ import annotations

from django.urls import path

from deliverability import api

urlpatterns = [
    path("sending-domains/", api.SendingDomainCollectionApi.as_view(), name="sending-domain-collection"),
    path("sending-domains/<id:domain_id>/", api.SendingDomainItemApi.as_view(), name="sending-domain-item"),
    path("sending-domains/<id:domain_id>/verify/", api.SendingDomainVerifyApi.as_view(), name="sending-domain-verify"),
]
