"""Templates of plain text and `{{ path }}` / `{{ path | default: "x" }}` skip Liquid's renderer;
whatever the data, the result must be exactly what Liquid renders."""

from __future__ import annotations

import random

import pytest

from sequences.personalization import CompiledTemplate, environment

VALUES = [
    "",
    "Ann",
    "Zoë 🎉",
    "{{ not markup }}",
    "{% if x %}",
    "  spaced  ",
    None,
    0,
    7,
    2.5,
    True,
    False,
    [],
    ["a"],
    {},
    {"k": "v"},
]
PATHS = [
    "contact.first_name",
    "contact.properties.plan",
    "contact.properties.nested.deep",
    "organization.name",
    "missing",
    "contact.missing.deeper",
    "unsubscribe_url",
]
OUTPUTS = [
    "{{ %s }}",
    "{{%s}}",
    "{{   %s   }}",
    '{{ %s | default: "there" }}',
    "{{ %s | default: 'friend of ours' }}",
    '{{ %s|default:"" }}',
]
TEXTS = ["", "Hi ", ",\n<p>", " & <b>bold</b> ", "}} stray { braces ", "€ "]


def random_context(rng: random.Random) -> dict:
    def pick() -> object:
        return rng.choice(VALUES)

    return {
        "contact": {
            "first_name": pick(),
            "properties": {"plan": pick(), "nested": {"deep": pick()} if rng.random() < 0.7 else pick()},
        },
        "organization": {"name": pick()},
        "unsubscribe_url": "https://example.com/u/abc",
    }


def random_template(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(rng.choice(TEXTS))
        parts.append(rng.choice(OUTPUTS) % rng.choice(PATHS))
    parts.append(rng.choice(TEXTS))
    return "".join(parts)


def test_two_thousand_random_simple_templates_render_exactly_as_liquid_does() -> None:
    rng = random.Random(20261124)
    for _ in range(2000):
        source = random_template(rng)
        context = random_context(rng)
        expected = environment().from_string(source).render(**context)
        assert CompiledTemplate(source).render(context) == expected, (source, context)


@pytest.mark.parametrize(
    "source",
    [
        "{{ contact.first_name | upcase }}",
        "{% if contact.first_name %}x{% endif %}",
        "{{ contact.properties.list.size }}",
        "{{ contact.properties.list.first }}",
        "{{- contact.first_name -}}",
        "{{ contact.properties['plan'] }}",
    ],
)
def test_templates_beyond_the_simple_form_are_rendered_by_liquid(source: str) -> None:
    context = {"contact": {"first_name": "  ann ", "properties": {"plan": "pro", "list": ["a", "b"]}}}
    template = CompiledTemplate(source)

    assert template._simple is None
    assert template.render(context) == environment().from_string(source).render(**context)
