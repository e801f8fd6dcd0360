from __future__ import annotations

import base64
from urllib.parse import unquote

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from delivery import mailbox, services
from emailseq.http import client_ip
from organizations.tenancy import organization_ids_for_user

# The smallest transparent GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = "no-store, no-cache, must-revalidate, private, max-age=0"


def _tracked_request(request: HttpRequest) -> services.TrackedRequest:
    return services.TrackedRequest(
        ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", ""), method=request.method or "GET"
    )


@require_http_methods(["GET", "HEAD"])
def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    if not services.open_record(token=token, request=_tracked_request(request)):
        raise Http404("unknown message")
    response = HttpResponse(PIXEL, content_type="image/gif")
    response["Cache-Control"] = NO_STORE
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    return response


def _link_target(request: HttpRequest) -> str | None:
    """request.GET.get("u"). A query of that one ASCII parameter (what mail carries) is decoded
    as QueryDict would decode it, without building one: this is the busiest redirect there is."""
    query = request.META.get("QUERY_STRING", "")
    if query.startswith("u=") and "&" not in query and query.isascii():
        return unquote(query[2:].replace("+", " "), errors="replace")
    return request.GET.get("u")


@require_http_methods(["GET", "HEAD"])
def click(request: HttpRequest, token: str) -> HttpResponse:
    url = services.click_record(token=token, request=_tracked_request(request), target=_link_target(request))
    if url is None:
        raise Http404("unknown link")
    response = HttpResponseRedirect(url)
    response["Cache-Control"] = NO_STORE
    response["Referrer-Policy"] = "no-referrer"
    return response


# No login, no cookies, no CSRF token: the signed link is the authority (RFC 8058 one-click
# POSTs come from mailbox providers, not browsers). GET never changes anything, because link
# scanners fetch every URL in a message.
@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    target = services.unsubscribe_target(token=token)
    if target is None:
        raise Http404("unknown unsubscribe link")
    context = {"organization": target.contact.organization, "email": target.contact.email}
    if request.method == "GET":
        return render(request, "delivery/unsubscribe_confirm.html", context)
    one_click = request.POST.get("List-Unsubscribe") == "One-Click"
    services.unsubscribe_by_link(target=target, request=_tracked_request(request), one_click=one_click)
    return render(request, "delivery/unsubscribed.html", context)


def _visible_organizations(request: HttpRequest) -> list[int] | None:
    return None if request.user.is_superuser else organization_ids_for_user(request.user)


@staff_member_required
def mailbox_list(request: HttpRequest) -> HttpResponse:
    entries = mailbox.entries(_visible_organizations(request))
    return render(request, "delivery/mailbox_list.html", {"entries": entries})


@staff_member_required
def mailbox_detail(request: HttpRequest, key: str) -> HttpResponse:
    message = mailbox.read(key, _visible_organizations(request))
    if message is None:
        raise Http404("no such message")
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    context = {
        "key": key,
        "headers": list(message.items()),
        "subject": message.get("Subject", ""),
        "html": html_part.get_content() if html_part else "",
        "text": text_part.get_content() if text_part else "",
    }
    return render(request, "delivery/mailbox_detail.html", context)


@staff_member_required
def mailbox_raw(request: HttpRequest, key: str) -> HttpResponse:
    raw = mailbox.raw(key, _visible_organizations(request))
    if raw is None:
        raise Http404("no such message")
    response = HttpResponse(raw, content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="{key.replace("/", "-")}.eml"'
    return response
