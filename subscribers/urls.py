from django.urls import path

from subscribers import views

app_name = "subscribers"

urlpatterns = [
    path("subscribe/<str:token>", views.subscribe, name="subscribe"),
    path("subscribe/<str:token>/embed", views.subscribe_embed, name="subscribe-embed"),
    path("confirm/<str:token>", views.confirm, name="confirm"),
    path("preferences/<str:token>", views.preferences, name="preferences"),
]
