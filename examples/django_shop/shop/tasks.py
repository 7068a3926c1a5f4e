"""Django tasks with pigeon's options.

``pigeon.contrib.django.task`` is Django's ``@task`` taking pigeon's options on every
Django version pigeon supports; on Django 6.1 ``django.tasks.task`` takes them too, but
Django 6.0's raises ``TypeError`` for ``max_attempts``.
"""

from django.core.mail import send_mail

from pigeon.contrib.django import task

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
