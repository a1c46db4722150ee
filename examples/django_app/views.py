"""JSON views: contrib.auth for login/logout, the session for the cart, messages once.

The JSON API is CSRF-exempt: its clients are scripts and tests that send JSON, not forms.
A browser app would keep CSRF protection on (Django's default) and send the token.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

#: how long POST /cart may be asked to linger (tests race a logout against it).
MAX_DELAY = 5.0


def _node() -> str:
    return os.environ.get("SESSIONSHARE_NODE_NAME", "node")


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _user(request: HttpRequest) -> str | None:
    return request.user.get_username() if request.user.is_authenticated else None


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@require_GET
def me(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "user": _user(request),
            "cart": request.session.get("cart", []),
            "node": _node(),
            "messages": [str(message) for message in messages.get_messages(request)],
        }
    )


@csrf_exempt
@require_POST
def login_view(request: HttpRequest) -> JsonResponse:
    data = _body(request)
    user = authenticate(
        request, username=str(data.get("username", "")), password=str(data.get("password", ""))
    )
    if user is None:
        return JsonResponse({"error": "bad credentials"}, status=401)
    login(request, user)  # a new session id (cycle_key); the anonymous cart is kept
    messages.success(request, "logged in")
    return JsonResponse({"user": user.get_username()})


@csrf_exempt
@require_POST
def cart(request: HttpRequest) -> JsonResponse:
    data = _body(request)
    items = [*request.session.get("cart", []), str(data.get("item", ""))]
    request.session["cart"] = items
    try:
        delay = min(max(float(data.get("delay", 0) or 0), 0.0), MAX_DELAY)
    except (TypeError, ValueError):
        delay = 0.0
    if delay:
        time.sleep(delay)
    return JsonResponse({"cart": items})


@csrf_exempt
@require_POST
def logout_view(request: HttpRequest) -> JsonResponse:
    logout(request)  # flush(): the stored session is deleted, cart included
    return JsonResponse({"user": None})
