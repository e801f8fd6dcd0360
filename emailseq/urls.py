from django.contrib import admin
from django.urls import include, path

from emailseq import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.health, name="health"),
    path("health", views.health_checks, name="health-checks"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("delivery.urls")),
    path("", include("subscribers.urls")),
    # Provider tracking and inbound webhooks, applied by deliverability.webhooks.
    path("webhooks/anymail/", include("anymail.urls")),
]

handler400 = "emailseq.views.bad_request"
handler500 = "emailseq.views.server_error"
