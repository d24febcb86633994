from __future__ import annotations

from django.urls import path

from . import views

app_name = "unipost_connect"

urlpatterns = [
    path("connect/", views.start, name="start"),
    path("return/<uuid:session_id>/", views.return_, name="return"),
    path("webhook/", views.webhook, name="webhook"),
    path("connections/", views.connections, name="connections"),
    path("accounts/<int:account_id>/disconnect/", views.disconnect, name="disconnect"),
]
