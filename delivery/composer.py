"""Turning a message row into the bytes that go over the wire.

The expensive parts (parsing Liquid, deriving the text part, encoding the sender) happen once
per step in a `Skeleton`; each recipient then costs a few renders, a regex pass over the links,
a handful of HMACs and a quoted-printable encode. The MIME structure is written directly
(multipart/alternative, UTF-8, quoted-printable) instead of through the email package, whose
object model costs several times more per message.
"""

from __future__ import annotations

import binascii
import html
import re
import secrets
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formataddr
from typing import Any
from urllib.parse import quote

from django.conf import settings

from deliverability import verp
from deliverability.dkim import DkimSigner, signer_for
from delivery import signing
from sequences.personalization import CompiledTemplate, contact_context, organization_context
from sequences.plaintext import html_to_text
from subscribers.addresses import ascii_address
from subscribers.links import preferences_url

ONE_CLICK = "List-Unsubscribe=One-Click"
# The href="..." of <a> tags: group 1 is the tag up to the opening quote, 2 the quote, 3 the
# URL, 4 the rest of the tag.
LINK_PATTERN = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2([^>]*>)""", re.IGNORECASE | re.DOTALL)
TEXT_URL_PATTERN = re.compile(r"""https?://[^\s<>"'()\[\]]+""")
NO_TRACK_ATTRIBUTE = "data-no-track"
# Around link targets that hold Liquid markup, in the parsed template: found again per message
# with these cheap patterns once rendered. Control characters, which no Liquid filter changes.
DYNAMIC_WRAP, UNTRACKED_WRAP = "\x1e", "\x1d"
DYNAMIC_PATTERN = re.compile("\x1e(.*?)\x1e", re.DOTALL)
UNTRACKED_PATTERN = re.compile("\x1d(.*?)\x1d", re.DOTALL)


def tracking_url(path: str) -> str:
    return f"{settings.BASE_URL}{path}"


def open_pixel_url(message_id: int) -> str:
    return tracking_url(f"/t/o/{signing.sign('open', message_id)}.gif")


def click_url(message_id: int, link_index: int, target: str | None = None) -> str:
    """The tracked form of link `link_index`. With its `target`, the URL carries the target
    under a MAC that covers it, so the redirect needs no database read (the busiest path of all);
    without, the redirect looks the target up in the message (links of older messages)."""
    if target is None:
        return tracking_url(f"/t/c/{signing.sign('click', message_id, link_index)}")
    token = signing.sign("click-to", message_id, link_index, covering=target.encode())
    return tracking_url(f"/t/c/{token}?u={quote(target, safe='')}")


def unsubscribe_url(message_id: int, contact_id: int) -> str:
    return tracking_url(f"/u/{signing.sign('unsubscribe', message_id, contact_id)}")


def _header_value(value: str) -> str:
    """A header value safe from injection: no line breaks, encoded when not ASCII."""
    value = " ".join(value.split())
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(linesep="\r\n")


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def _quoted_printable(text: str) -> str:
    # b2a_qp breaks long lines with CRLF only when the text's first line ends in CRLF: a text
    # of one long line would get bare LF soft breaks, which SMTP servers refuse as one long line.
    encoded = binascii.b2a_qp(_crlf(text).encode("utf-8"), istext=True)
    if b"\r\n" not in encoded:
        encoded = encoded.replace(b"\n", b"\r\n")
    return encoded.decode("ascii")


@dataclass
class ComposedMessage:
    envelope_from: str
    recipient: str
    from_header: str
    subject: str
    text: str
    html: str
    extra_headers: list[tuple[str, str]]
    links: list[str]
    message_id_header: str
    # Signs the final bytes (DKIM) when the From domain is a sending domain of the organization.
    dkim_signer: DkimSigner | None = field(default=None, repr=False)
    _raw: bytes | None = field(default=None, repr=False)

    def as_bytes(self) -> bytes:
        if self._raw is None:
            boundary = f"=_es_{secrets.token_hex(12)}"
            lines = [
                f"From: {self.from_header}",
                f"To: {self.recipient}",
                f"Subject: {_header_value(self.subject)}",
                *(f"{name}: {value}" for name, value in self.extra_headers),
                "MIME-Version: 1.0",
                f'Content-Type: multipart/alternative; boundary="{boundary}"',
                "",
                f"--{boundary}",
                "Content-Type: text/plain; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                _quoted_printable(self.text),
                f"--{boundary}",
                "Content-Type: text/html; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
                "",
                _quoted_printable(self.html),
                f"--{boundary}--",
                "",
            ]
            # The quoted-printable parts cannot contain the boundary: "=" is always encoded
            # there as "=3D", and the boundary starts with "=_".
            raw = "\r\n".join(lines).encode("ascii")
            self._raw = self.dkim_signer.sign(raw) if self.dkim_signer is not None else raw
        return self._raw

    def smtp_data(self) -> bytes:
        """The message as sent after DATA: dot-stuffed (RFC 5321 4.5.2) and terminated."""
        return self.as_bytes().replace(b"\r\n.", b"\r\n..") + b".\r\n"


@dataclass
class Recipient:
    message_id: int
    contact_id: int
    email: str
    first_name: str
    last_name: str
    properties: dict[str, Any]
    timezone: str


class Skeleton:
    """Everything about an email step that is the same for every recipient."""

    def __init__(
        self,
        *,
        subject: str,
        html_body: str,
        text_body: str,
        from_name: str,
        from_email: str,
        reply_to: str,
        track_opens: bool,
        track_clicks: bool,
        organization_id: int,
        organization_name: str,
        postal_address: str,
        sequence_id: int,
    ) -> None:
        text_body = text_body or html_to_text(html_body)
        # Links whose target is fixed in the template are found once here and replaced by
        # markers; each message only swaps the markers for its own signed click URLs.
        self.static_links: list[str] = []
        self.untracked: set[str] = set()
        self.dynamic_links = False
        if track_clicks:
            html_body, text_body = self._mark_static_links(html_body, text_body)
        self.subject = CompiledTemplate(subject)
        self.html = CompiledTemplate(html_body)
        self.text = CompiledTemplate(text_body)
        from_email = ascii_address(from_email)
        self.from_email = from_email
        self.dkim_signer = signer_for(organization_id=organization_id, from_email=from_email)
        from_name = " ".join(from_name.split())  # no line breaks: they would inject headers
        self.from_header = formataddr((from_name, from_email), charset="utf-8") if from_name else from_email
        self.reply_to = ascii_address(reply_to) if reply_to else ""
        self.track_opens = track_opens
        self.track_clicks = track_clicks
        self.organization = organization_context(name=organization_name, postal_address=postal_address)
        self.feedback_id = f"{sequence_id}:{organization_id}:emailseq"
        address_html = "<br>".join(html.escape(line) for line in postal_address.splitlines() if line.strip())
        self.footer_html = (
            '<div style="margin-top:32px;padding-top:16px;border-top:1px solid #ddd;'
            'font-size:12px;color:#666;font-family:sans-serif">'
            f"{html.escape(organization_name)}<br>{address_html}<br>"
            '<a href="{unsubscribe}" style="color:#666" ' + NO_TRACK_ATTRIBUTE + ">Unsubscribe</a> · "
            '<a href="{preferences}" style="color:#666" ' + NO_TRACK_ATTRIBUTE + ">Email preferences</a></div>"
        )
        self.footer_text = (
            "\n\n-- \n"
            + organization_name
            + "\n"
            + postal_address.strip()
            + "\nUnsubscribe: {unsubscribe}\nEmail preferences: {preferences}\n"
        )

    def compose(self, recipient: Recipient, *, date_header: str) -> ComposedMessage:
        """Render one message; raises personalization.RenderError for a template that fails."""
        message_id = recipient.message_id
        unsubscribe = unsubscribe_url(message_id, recipient.contact_id)
        preferences = preferences_url(recipient.contact_id)
        context = {
            "contact": contact_context(
                email=recipient.email,
                first_name=recipient.first_name,
                last_name=recipient.last_name,
                properties=recipient.properties,
                timezone=recipient.timezone,
            ),
            "organization": self.organization,
            "unsubscribe_url": unsubscribe,
            "preferences_url": preferences,
        }
        subject = self.subject.render(context)
        body_html = self.html.render(context)
        body_text = self.text.render(context)

        links = list(self.static_links)
        if self.track_clicks:
            body_html, body_text = self._track_links(message_id, body_html, body_text, unsubscribe, links)
        footer_html = self.footer_html.replace("{unsubscribe}", html.escape(unsubscribe)).replace(
            "{preferences}", html.escape(preferences)
        )
        if self.track_opens:
            footer_html += (
                f'<img src="{open_pixel_url(message_id)}" width="1" height="1" alt="" '
                'style="display:block;border:0;width:1px;height:1px">'
            )
        body_html = _insert_before_body_end(body_html, footer_html)
        body_text = body_text.rstrip("\n") + self.footer_text.replace("{unsubscribe}", unsubscribe).replace(
            "{preferences}", preferences
        )

        correlation = signing.sign("correlation", message_id)
        message_id_header = f"<{message_id}.{correlation[:16]}@{settings.MESSAGE_ID_DOMAIN}>"
        mailto = f"mailto:unsubscribe+{unsubscribe.rsplit('/', 1)[1]}@{settings.UNSUBSCRIBE_MAILTO_DOMAIN}?subject=unsubscribe"
        headers = [
            ("Date", date_header),
            ("Message-ID", message_id_header),
            ("List-Unsubscribe", f"<{unsubscribe}>, <{mailto}>"),
            ("List-Unsubscribe-Post", ONE_CLICK),
            ("X-Emailseq-ID", correlation),
            ("Feedback-ID", self.feedback_id),
        ]
        if self.reply_to:
            headers.append(("Reply-To", self.reply_to))
        return ComposedMessage(
            # VERP: a bounce that comes back names its message (deliverability.verp). Previews and
            # test emails (message 0) bounce to their sender.
            envelope_from=verp.return_path(message_id) if message_id else self.from_email,
            recipient=recipient.email,
            from_header=self.from_header,
            subject=" ".join(subject.split()),
            text=body_text,
            html=body_html,
            extra_headers=headers,
            links=links,
            message_id_header=message_id_header,
            dkim_signer=self.dkim_signer,
        )

    def _mark_static_links(self, html_body: str, text_body: str) -> tuple[str, str]:
        index_of: dict[str, int] = {}

        def static_index(url: str) -> int:
            if url not in index_of:
                index_of[url] = len(self.static_links)
                self.static_links.append(url)
            return index_of[url]

        def mark_html(match: re.Match[str]) -> str:
            target = html.unescape(match.group(3).strip())
            no_track = NO_TRACK_ATTRIBUTE in match.group(1) or NO_TRACK_ATTRIBUTE in match.group(4)
            if "{{" in target or "{%" in target:
                # Known only once rendered: wrapped, so that each message finds it without
                # scanning its whole HTML.
                self.dynamic_links = True
                wrap = UNTRACKED_WRAP if no_track else DYNAMIC_WRAP
                return f"{match.group(1)}{match.group(2)}{wrap}{match.group(3)}{wrap}{match.group(2)}{match.group(4)}"
            if no_track:
                self.untracked.add(target)
                return match.group(0)
            if not target.lower().startswith(("http://", "https://")):
                return match.group(0)
            marker = _marker(static_index(target))
            return f"{match.group(1)}{match.group(2)}{marker}{match.group(2)}{match.group(4)}"

        def mark_text(match: re.Match[str]) -> str:
            url = match.group(0)
            if "{" in url or "}" in url or url in self.untracked:
                return url
            return _marker(static_index(url))

        html_body = LINK_PATTERN.sub(mark_html, html_body)  # first: it fills `untracked`
        return html_body, TEXT_URL_PATTERN.sub(mark_text, text_body)

    def _track_links(
        self, message_id: int, body_html: str, body_text: str, unsubscribe: str, links: list[str]
    ) -> tuple[str, str]:
        tracked_urls = {url: _marker(index) for index, url in enumerate(self.static_links)}

        def tracked(url: str) -> str | None:
            if url in tracked_urls:
                return tracked_urls[url]
            if not url.lower().startswith(("http://", "https://")) or url == unsubscribe:
                return None
            tracked_urls[url] = _marker(len(links))
            links.append(url)
            return tracked_urls[url]

        def unwrap_dynamic(match: re.Match[str]) -> str:
            return tracked(html.unescape(match.group(1).strip())) or match.group(1)

        def replace_text(match: re.Match[str]) -> str:
            # Only links the template itself made: a URL that arrives in contact data (a name
            # that is a URL) must never become a redirect through our domain.
            return tracked_urls.get(match.group(0), match.group(0))

        if self.dynamic_links:
            body_html = UNTRACKED_PATTERN.sub(lambda match: match.group(1), body_html)
            body_html = DYNAMIC_PATTERN.sub(unwrap_dynamic, body_html)
            # The text part shows the HTML's personalized links as plain URLs.
            body_text = TEXT_URL_PATTERN.sub(replace_text, body_text)
        for index, target in enumerate(links):
            url = click_url(message_id, index, target)
            body_html = body_html.replace(_marker(index), url)
            body_text = body_text.replace(_marker(index), url)
        return body_html, body_text


def _marker(index: int) -> str:
    """Stands for tracked link `index` until a message's own click URL replaces it. Made of a
    control character and digits, which no Liquid filter changes."""
    return f"\x1f{index}\x1f"


def _insert_before_body_end(body_html: str, fragment: str) -> str:
    position = body_html.lower().rfind("</body>")
    if position == -1:
        return body_html + fragment
    return body_html[:position] + fragment + body_html[position:]
