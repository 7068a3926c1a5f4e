from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.django.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from pigeon.contrib.django import forward_signals
        from tests.django.testapp import handlers  # noqa: F401 - registers the event handlers
        from tests.django.testapp.models import Customer, Order

        forward_signals(Customer, ["post_save", "post_delete"], topic="customers")
        forward_signals(Order, ["post_delete"], topic="orders")
