import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .models import Customer, Order
from .tasks import send_confirmation


@csrf_exempt
@require_POST
def place_order(request: HttpRequest) -> JsonResponse:
    data = json.loads(request.body)
    with transaction.atomic():  # the order and its email job commit together, or not at all
        customer, _ = Customer.objects.get_or_create(email=data["email"], defaults={"name": data["name"]})
        order = Order.objects.create(customer=customer, item=data["item"], total=data["total"])
        result = send_confirmation.enqueue(order.pk)
    return JsonResponse({"order": order.pk, "customer": customer.pk, "job": result.id})


@csrf_exempt
@require_POST
def delete_customer(request: HttpRequest, pk: int) -> JsonResponse:
    get_object_or_404(Customer, pk=pk).delete()  # one snapshot event per deleted row, on commit
    return JsonResponse({"deleted": pk})
