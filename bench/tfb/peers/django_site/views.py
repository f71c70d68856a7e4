"""TechEmpower test views written with the Django ORM, templates and JsonResponse."""

from operator import attrgetter

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from tfb import rules
from tfb.peers.django_site.models import Fortune, World


def world_json(world: World) -> dict[str, int]:
    return {"id": world.id, "randomNumber": world.randomnumber}


def plaintext(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"Hello, World!", content_type="text/plain")


def json_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "Hello, World!"})


def db(request: HttpRequest) -> JsonResponse:
    return JsonResponse(world_json(World.objects.get(id=rules.random_id())))


def queries(request: HttpRequest) -> JsonResponse:
    count = rules.queries_param(request.GET.get("queries"))
    worlds = [World.objects.get(id=rules.random_id()) for _ in range(count)]
    return JsonResponse([world_json(world) for world in worlds], safe=False)


def fortunes(request: HttpRequest) -> HttpResponse:
    rows = list(Fortune.objects.all())
    rows.append(Fortune(id=0, message=rules.ADDED_FORTUNE))  # unsaved, never written
    rows.sort(key=attrgetter("message"))
    return render(request, "fortunes.html", {"fortunes": rows})


def updates(request: HttpRequest) -> JsonResponse:
    count = rules.queries_param(request.GET.get("queries"))
    with transaction.atomic():
        worlds = [World.objects.get(id=id_) for id_ in rules.random_ids(count)]
        for world in worlds:
            world.randomnumber = rules.random_id()
        # Ordered by id so concurrent requests lock rows in the same order.
        worlds.sort(key=attrgetter("id"))
        World.objects.bulk_update(worlds, ["randomnumber"])
    return JsonResponse([world_json(world) for world in worlds], safe=False)
