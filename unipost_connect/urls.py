from __future__ import annotations

from django.urls import path

from . import api, views

app_name = "unipost_connect"

urlpatterns = [
    path("connect/", views.start, name="start"),
    path("return/<uuid:session_id>/", views.return_, name="return"),
    path("webhook/", views.webhook, name="webhook"),
    path("connections/", views.connections, name="connections"),
    path("accounts/<int:account_id>/disconnect/", views.disconnect, name="disconnect"),
    path("api/sessions/", api.sessions, name="api-sessions"),
    path("api/sessions/<uuid:session_id>/", api.session, name="api-session"),
    path("api/accounts/", api.accounts, name="api-accounts"),
    path("api/accounts/<int:account_id>/", api.account, name="api-account"),
    path("api/schema/", api.schema, name="api-schema"),
    # Last: whatever else is under api/ (a malformed id) is a JSON 404 too.
    path("api/<path:rest>", api.not_found),
]
