"""``pigeon celery-bridge``: pigeon workers drain Celery's queues (see ``core``)."""
