"""Plain django.tasks functions; pigeon's options pass through Django 6.1's @task(**kwargs)."""

from django.core.mail import send_mail
from django.tasks import task

from .models import Order


@task(queue_name="emails", max_attempts=5, timeout=30)
def send_confirmation(order_id: int) -> str:
    order = Order.objects.select_related("customer").get(pk=order_id)
    send_mail(
        subject=f"Order #{order.pk} confirmed",
        message=f"Thanks {order.customer.name}: {order.item}, {order.total} EUR.",
        from_email=None,
        recipient_list=[order.customer.email],
    )
    return order.customer.email
