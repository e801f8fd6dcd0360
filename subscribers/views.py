"""Public pages: sign up through a form, confirm a sign-up, choose preferences.

No login and no cookies: the form's token or the signed link is the authority. Sign-ups come
from forms embedded on other sites, so their POST cannot carry our CSRF token; each client
address has a budget of sign-ups instead (consent.subscribe_request_allowed). GETs never change
anything, because link scanners fetch every URL in a message.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from api.problems import PROBLEM_CONTENT_TYPE, problem_body
from emailseq.http import client_ip
from subscribers import consent, links, selectors, services
from subscribers.forms import HONEYPOT_FIELD, PreferencesForm, SignUpForm
from subscribers.models import Contact, SubscribeForm

NO_STORE = "no-store, private"


def _wants_json(request: HttpRequest) -> bool:
    return request.content_type == "application/json"


def _problem(request: HttpRequest, status_code: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    body = problem_body(status_code=status_code, code=code, detail=detail, instance=request.path, **extra)
    return JsonResponse(body, status=status_code, content_type=PROBLEM_CONTENT_TYPE)


def _public_form(token: str) -> SubscribeForm:
    form = selectors.subscribe_form_public(token=token)
    if form is None:
        raise Http404("unknown subscribe form")
    return form


def _signup_form(form: SubscribeForm, data: Any = None) -> SignUpForm:
    return SignUpForm(
        data,
        offered_lists=consent.subscribe_form_lists(form),
        fixed_list=form.contact_list_id is not None,
    )


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Cache-Control"] = NO_STORE
    return response


def _signed_up(request: HttpRequest, form: SubscribeForm) -> HttpResponse:
    """The answer to every accepted sign-up, bots included. It depends on the organization's
    double opt-in setting only, never on what the address is to us (new, active, pending,
    unsubscribed, suppressed): anyone may post any address, so a different answer would tell
    them who is on the list."""
    double_opt_in = form.organization.double_opt_in
    if _wants_json(request):
        return JsonResponse({"status": "received"}, status=202 if double_opt_in else 200)
    if form.redirect_url:
        return HttpResponseRedirect(form.redirect_url, status=303)
    context = {"organization": form.organization, "double_opt_in": double_opt_in}
    return _page(request, "subscribers/subscribe_done.html", context)


def _invalid(request: HttpRequest, form: SubscribeForm, signup: SignUpForm) -> HttpResponse:
    if _wants_json(request):
        errors = [
            {"field": name, "message": message, "code": "invalid"}
            for name, messages in signup.errors.items()
            for message in messages
        ]
        detail = "; ".join(f"{error['field']}: {error['message']}" for error in errors)
        return _problem(request, 400, "validation", detail, errors=errors)
    context = {"form": form, "organization": form.organization, "signup": signup, "honeypot": HONEYPOT_FIELD}
    return _page(request, "subscribers/subscribe.html", context, status=400)


def _posted_data(request: HttpRequest) -> Any:
    if not _wants_json(request):
        return request.POST
    try:
        data = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ValidationError("The body must be a JSON object.")
    return data


@csrf_exempt
@xframe_options_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def subscribe(request: HttpRequest, token: str) -> HttpResponse:
    form = _public_form(token)
    if request.method != "POST":
        context = {"form": form, "organization": form.organization, "signup": _signup_form(form)}
        return _page(request, "subscribers/subscribe.html", {**context, "honeypot": HONEYPOT_FIELD})
    ip = client_ip(request)
    if not consent.subscribe_request_allowed(ip):
        detail = "Too many sign-ups from your address. Please try again in an hour."
        if _wants_json(request):
            return _problem(request, 429, "throttled", detail)
        return _page(request, "subscribers/message.html", {"organization": form.organization, "text": detail}, 429)
    try:
        data = _posted_data(request)
    except ValidationError as error:
        return _problem(request, 400, "parse_error", error.messages[0])
    signup = _signup_form(form, data)
    if signup.is_bot:
        return _signed_up(request, form)
    if not signup.is_valid():
        return _invalid(request, form, signup)
    sign_up = consent.SignUp(
        email=signup.cleaned_data["email"],
        first_name=signup.cleaned_data.get("first_name") or "",
        list_ids=tuple(signup.cleaned_data.get("lists") or ()),
        ip=ip,
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    try:
        consent.subscribe_by_form(form=form, sign_up=sign_up)
    except ValidationError as error:
        for field, messages in error.message_dict.items():
            signup.add_error(field if field in signup.fields else None, messages)
        return _invalid(request, form, signup)
    return _signed_up(request, form)


@require_http_methods(["GET", "HEAD"])
def subscribe_embed(request: HttpRequest, token: str) -> HttpResponse:
    """The HTML to paste into another site, as text to copy."""
    form = _public_form(token)
    return HttpResponse(consent.embed_snippet(form), content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    sign_up = consent.confirmation_sign_up(token)
    if sign_up is None:
        context = {"organization": None, "text": "This confirmation link is not valid or has expired."}
        return _page(request, "subscribers/message.html", {**context, "invalid": True}, status=404)
    context = {"organization": sign_up.organization, "email": sign_up.contact.email, "wording": sign_up.wording}
    if request.method != "POST":
        return _page(request, "subscribers/confirm.html", context)
    outcome = consent.contact_confirm(
        sign_up=sign_up, ip=client_ip(request), user_agent=request.META.get("HTTP_USER_AGENT", "")
    )
    status = 200 if outcome in (consent.Confirmation.CONFIRMED, consent.Confirmation.ALREADY_CONFIRMED) else 409
    context["outcome"] = outcome.value
    context["preferences_url"] = links.preferences_url(sign_up.contact_id)
    return _page(request, "subscribers/confirmed.html", context, status=status)


def _preferences_context(contact: Contact, form: PreferencesForm, **extra: Any) -> dict[str, Any]:
    return {
        "organization": contact.organization,
        "contact": contact,
        "form": form,
        "mailable": contact.status == Contact.Status.ACTIVE,
        "can_resubscribe": consent.preferences_can_resubscribe(contact),
        **extra,
    }


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    contact = consent.preferences_contact(token)
    if contact is None:
        raise Http404("unknown preferences link")
    offered = consent.public_lists(contact.organization_id)
    paused = contact.paused_until is not None
    if request.method != "POST":
        initial = {"lists": list(contact.lists.filter(is_public=True).values_list("id", flat=True))}
        form = PreferencesForm(initial=initial, offered_lists=offered, paused=paused)
        return _page(request, "subscribers/preferences.html", _preferences_context(contact, form))
    ip, user_agent = client_ip(request), request.META.get("HTTP_USER_AGENT", "")
    action = request.POST.get("action", "save")
    form = PreferencesForm(request.POST, offered_lists=offered, paused=paused)
    if action == "unsubscribe":
        services.contact_unsubscribe(contact=contact, source="preference page", ip=ip, user_agent=user_agent)
        message = "You are unsubscribed: you will get no more email from us."
    elif action == "resubscribe":
        wording = f"Subscribe {contact.email} again to email from {contact.organization.name}."
        consent.preferences_resubscribe(contact=contact, ip=ip, user_agent=user_agent, wording=wording)
        message = "Welcome back: you are subscribed again."
    elif not form.is_valid():
        return _page(request, "subscribers/preferences.html", _preferences_context(contact, form), status=400)
    else:
        try:
            consent.preferences_update(
                contact=contact,
                list_ids=form.cleaned_data.get("lists") or [],
                pause=form.cleaned_data.get("pause") or "",
                ip=ip,
                user_agent=user_agent,
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                form.add_error(field if field in form.fields else None, messages)
            return _page(request, "subscribers/preferences.html", _preferences_context(contact, form), status=400)
        message = "Your preferences are saved."
    contact.refresh_from_db()
    fresh = PreferencesForm(
        initial={"lists": list(contact.lists.filter(is_public=True).values_list("id", flat=True))},
        offered_lists=offered,
        paused=contact.paused_until is not None,
    )
    return _page(request, "subscribers/preferences.html", _preferences_context(contact, fresh, saved=message))
