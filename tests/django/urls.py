from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("pigeon/", include("pigeon.contrib.django.urls")),
]
