from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from pigeon.contrib.django import forward_signals

        from . import handlers  # noqa: F401 - registers the event handlers
        from .models import Customer, Order

        forward_signals(Customer, ["post_delete"], topic="customers")
        forward_signals(Order, ["post_delete"], topic="orders")
