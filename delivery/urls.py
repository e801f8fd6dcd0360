from django.urls import path

from delivery import views

app_name = "delivery"

urlpatterns = [
    path("t/o/<str:token>.gif", views.open_pixel, name="open"),
    path("t/c/<str:token>", views.click, name="click"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
    path("mailbox/", views.mailbox_list, name="mailbox"),
    path("mailbox/<path:key>/raw", views.mailbox_raw, name="mailbox-raw"),
    path("mailbox/<path:key>", views.mailbox_detail, name="mailbox-detail"),
]
