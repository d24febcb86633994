from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from . import views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="unipost_connect:connections"), name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("headless/", views.headless, name="headless"),
    path("popup-buttons/", views.popup_buttons, name="popup-buttons"),
    path("admin/", admin.site.urls),
    path("unipost/", include("unipost_connect.urls")),
]

if settings.USE_EMBEDDED_FAKE:
    urlpatterns.append(path("fake-unipost/", include("unipost_connect.testing.live")))
    # The fake's lever on the account lifecycle (a token refresh that fails).
    urlpatterns.append(path("reconnect-tools/", views.reconnect_tools, name="reconnect-tools"))
