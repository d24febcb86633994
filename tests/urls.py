from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("unipost/", include("unipost_connect.urls")),
    path("done/", lambda request: HttpResponse("done"), name="done"),
    path("login/", lambda request: HttpResponse("login"), name="login"),
]
