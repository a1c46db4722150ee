"""The example contract's five endpoints."""

from __future__ import annotations

from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("healthz", views.healthz),
    path("me", views.me),
    path("login", views.login_view),
    path("cart", views.cart),
    path("logout", views.logout_view),
]
