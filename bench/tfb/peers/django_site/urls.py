from django.urls import path

from tfb.peers.django_site import views

urlpatterns = [
    path("plaintext", views.plaintext),
    path("json", views.json_view),
    path("db", views.db),
    path("queries", views.queries),
    path("fortunes", views.fortunes),
    path("updates", views.updates),
]
