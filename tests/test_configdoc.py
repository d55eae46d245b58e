"""docs/configuration.md is `python -m sindiffusion.configdoc`'s output, and it documents every key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sindiffusion.config import SECTIONS, KindTable, SampleConfig
from sindiffusion.configdoc import configuration_markdown, field_docs

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_reference_page_is_generated_from_the_config():
    """Regenerate with `python -m sindiffusion.configdoc > docs/configuration.md` if this fails."""
    assert DOC.read_text() == configuration_markdown()


def test_every_key_of_every_section_and_kind_has_a_row():
    text = configuration_markdown()
    for name, spec in SECTIONS.items():
        classes = spec.kinds.values() if isinstance(spec, KindTable) else [spec]
        for cls in classes:
            for field in dataclasses.fields(cls):
                assert f"| `{name}.{field.name}` |" in text, f"{name}.{field.name}"


def test_field_docstrings_are_read_from_the_source_including_the_base_class():
    docs = field_docs(SampleConfig)
    assert docs["steps"].startswith("Sampling steps")  # declared on SamplingSettings
    assert "height/width" in docs["scale_w"]
