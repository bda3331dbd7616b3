"""One answer, everywhere, to "is this character's language Chinese or Japanese?"."""

from __future__ import annotations

import pytest

from rolecast.character.model import cjk_language
from rolecast.prompt.assemble import template_language


@pytest.mark.parametrize("language", ["zh", "zh-Hant", "ZH-cn", "ja", "JA", " ja-JP"])
def test_chinese_and_japanese_in_any_form(language: str) -> None:
    assert cjk_language(language)
    assert template_language(language) == "zh"  # "ZH" used to get the English templates


@pytest.mark.parametrize("language", ["en", "EN-us", "ko", "fr", ""])
def test_other_languages(language: str) -> None:
    assert not cjk_language(language)
    assert template_language(language) == "en"
