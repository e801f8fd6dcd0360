"""The text alternative of an HTML email, derived from the HTML template source.

Derived once per template (not per message) from the source, so Liquid markup in text and in
link targets survives and is rendered per contact like the HTML.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

BLOCK_TAGS = {
    "p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol",
    "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "hr",
}  # fmt: skip
SKIPPED_TAGS = {"style", "script", "head", "title"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.link_href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in BLOCK_TAGS:
            self.parts.append("\n\n")
        elif tag == "a":
            self.link_href = dict(attrs).get("href") or ""
            self.link_text = []
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.handle_data(alt)

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCK_TAGS or tag == "li":
            self.parts.append("\n")
        elif tag == "a" and self.link_href is not None:
            text = re.sub(r"\s+", " ", "".join(self.link_text)).strip()
            href = self.link_href
            self.link_href = None
            if href.startswith("mailto:") or not href:
                self.parts.append(text)
            elif not text or text == href:
                self.parts.append(href)
            else:
                self.parts.append(f"{text} ({href})")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.link_href is not None:
            self.link_text.append(data)
        else:
            self.parts.append(re.sub(r"[ \t\r\n]+", " ", data))


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    text = "".join(extractor.parts)
    lines = [line.strip() for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
