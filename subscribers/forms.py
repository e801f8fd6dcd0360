"""Forms of the public pages: signing up, and the preference page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from subscribers.addresses import normalize_email
from subscribers.models import ContactList

# A field people never see (hidden by CSS, skipped by the keyboard) and bots fill in.
HONEYPOT_FIELD = "homepage"

PAUSE_CHOICES = [
    ("", "Keep sending as chosen above"),
    ("week", "Pause all email for 1 week"),
    ("month", "Pause all email for 1 month"),
    ("quarter", "Pause all email for 3 months"),
]


def _list_choices(lists: list[ContactList]) -> list[tuple[int, str]]:
    return [(item.pk, item.name) for item in lists]


class SignUpForm(forms.Form):
    email = forms.CharField(max_length=254, label="Email address")
    first_name = forms.CharField(max_length=150, required=False, label="First name (optional)")
    lists = forms.TypedMultipleChoiceField(
        coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="What would you like to receive?"
    )
    homepage = forms.CharField(required=False, max_length=2000, label="Leave this field empty")

    def __init__(self, *args: Any, offered_lists: list[ContactList], fixed_list: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if fixed_list or not offered_lists:
            del self.fields["lists"]
        else:
            self.fields["lists"].choices = _list_choices(offered_lists)

    @property
    def is_bot(self) -> bool:
        """A filled honeypot: answered as a success, and nothing is stored."""
        return bool(str(self.data.get(HONEYPOT_FIELD) or "").strip())

    def clean_email(self) -> str:
        try:
            return normalize_email(self.cleaned_data["email"])
        except ValidationError as error:
            raise ValidationError(error.messages) from None


class PreferencesForm(forms.Form):
    lists = forms.TypedMultipleChoiceField(
        coerce=int, required=False, widget=forms.CheckboxSelectMultiple, label="Send me"
    )
    pause = forms.ChoiceField(choices=PAUSE_CHOICES, required=False, widget=forms.RadioSelect, label="Pause")

    def __init__(self, *args: Any, offered_lists: list[ContactList], paused: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["lists"].choices = _list_choices(offered_lists)
        if not offered_lists:
            del self.fields["lists"]
        if paused:
            self.fields["pause"].choices = [*PAUSE_CHOICES, ("resume", "Resume sending now")]
