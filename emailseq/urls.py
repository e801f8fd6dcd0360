from django.contrib import admin
from django.urls import include, path

from emailseq import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("", include("api.urls")),
    path("", include("delivery.urls")),
]
