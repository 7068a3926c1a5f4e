from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import models


class Customer(models.Model):
    name: models.CharField[str, str] = models.CharField(max_length=100)
    email: models.EmailField[str, str] = models.EmailField()


class Order(models.Model):
    customer: models.ForeignKey[Customer, Customer] = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="orders"
    )
    total: models.DecimalField[Decimal, Decimal] = models.DecimalField(max_digits=10, decimal_places=2)
    placed_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(auto_now_add=True)


class Ran(models.Model):
    """A row per task run: what the tests wait for."""

    label: models.CharField[str, str] = models.CharField(max_length=100)
    attempt: models.IntegerField[int, int] = models.IntegerField(default=0)


class Note(models.Model):
    """Forwarded to the PostgreSQL backend only (tests/django/test_postgres.py)."""

    text: models.CharField[str, str] = models.CharField(max_length=100)
