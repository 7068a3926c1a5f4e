"""Event handlers: they get frozen snapshots, never ORM instances (the rows are gone anyway)."""

import logging

from django.core.mail import send_mail

from pigeon.contrib.django import ModelSnapshot, get_app

app = get_app()
log = logging.getLogger("shop")


@app.on("customers.post_delete")
def farewell(snapshot: ModelSnapshot) -> None:
    send_mail(
        subject="Your account was closed",
        message=f"Goodbye {snapshot.fields['name']}.",
        from_email=None,
        recipient_list=[snapshot.fields["email"]],
    )


@app.on("orders.post_delete")
def order_dropped(snapshot: ModelSnapshot) -> None:
    log.info("order %s of customer %s deleted", snapshot.pk, snapshot.fields["customer_id"])
