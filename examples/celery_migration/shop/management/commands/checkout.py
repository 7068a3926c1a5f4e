"""``manage.py checkout ORDER``: what the web code does: send tasks and wait for them."""

from django.core.management.base import BaseCommand
from reports.tasks import count_orders

from shop.tasks import send_receipt


class Command(BaseCommand):
    help = "Send the order's receipt and count today's orders, and print what the tasks returned."

    def add_arguments(self, parser):
        parser.add_argument("order", type=int)
        parser.add_argument("--by-name", action="store_true", help="send as an old Celery producer does")

    def handle(self, order, by_name, **options):
        if by_name:
            from proj import celery_app

            receipt = celery_app.send_task("shop.tasks.send_receipt", (order,))
        else:
            receipt = send_receipt.delay(order)
        self.stdout.write(receipt.get(timeout=30))
        self.stdout.write(count_orders.delay().get(timeout=30))
