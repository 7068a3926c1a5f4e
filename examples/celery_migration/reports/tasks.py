"""Reports, written for Celery (step 3 of the guide changes the import line)."""

from celery import shared_task
from shop.runner import runner


@shared_task(acks_late=True)
def count_orders(day="today"):
    return f"3 orders {day} ({runner()})"
