"""The shop's tasks, written for Celery (step 2 of the guide changes the import line)."""

from celery import shared_task

from shop.runner import runner


@shared_task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True, max_retries=5)
def send_receipt(self, order_id):
    return f"receipt for order {order_id} sent ({runner()}, attempt {self.request.retries + 1})"


@shared_task
def send_digest(limit=10):
    return f"digest of {limit} orders sent ({runner()})"
