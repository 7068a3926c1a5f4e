from django.contrib import admin
from shop import views

from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/", views.place_order),
    path("customers/<int:pk>/delete/", views.delete_customer),
]
