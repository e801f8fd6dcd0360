from __future__ import annotations

from django.urls import path

from subscribers import api, consent_api

urlpatterns = [
    path("contacts/", api.ContactCollectionApi.as_view(), name="contact-collection"),
    path("contacts/lookup/", api.ContactLookupApi.as_view(), name="contact-lookup"),
    path("contacts/bulk/", api.ContactBulkApi.as_view(), name="contact-bulk"),
    path("contacts/<id:contact_id>/", api.ContactItemApi.as_view(), name="contact-item"),
    path("contacts/<id:contact_id>/tags/", api.ContactTagsApi.as_view(), name="contact-tags"),
    path("contacts/<id:contact_id>/lists/", api.ContactListsApi.as_view(), name="contact-lists"),
    path("contacts/<id:contact_id>/messages/", api.ContactMessagesApi.as_view(), name="contact-messages"),
    path("contacts/<id:contact_id>/events/", api.ContactEventsApi.as_view(), name="contact-events"),
    path("contacts/<id:contact_id>/export/", api.ContactExportApi.as_view(), name="contact-gdpr-export"),
    path("contacts/<id:contact_id>/erase/", api.ContactEraseApi.as_view(), name="contact-erase"),
    path("contacts/<id:contact_id>/unsubscribe/", api.ContactUnsubscribeApi.as_view(), name="contact-unsubscribe"),
    path("contacts/<id:contact_id>/consent/", consent_api.ContactConsentApi.as_view(), name="contact-consent"),
    path("lists/", api.ListCollectionApi.as_view(), name="list-collection"),
    path("lists/<id:list_id>/", api.ListItemApi.as_view(), name="list-item"),
    path("lists/<id:list_id>/contacts/", api.ListContactsApi.as_view(), name="list-contacts"),
    path("tags/", api.TagCollectionApi.as_view(), name="tag-collection"),
    path("tags/<id:tag_id>/", api.TagItemApi.as_view(), name="tag-item"),
    path("events/", api.EventCollectionApi.as_view(), name="event-collection"),
    path("subscribe-forms/", consent_api.SubscribeFormCollectionApi.as_view(), name="subscribe-form-collection"),
    path("subscribe-forms/<id:form_id>/", consent_api.SubscribeFormItemApi.as_view(), name="subscribe-form-item"),
]
