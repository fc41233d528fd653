"""Model-card front matter and the Hub's search facets."""

from __future__ import annotations

import pytest

from hubfs.errors import BadRequestError
from hubfs.server.cards import card_tags, parse_front_matter


def test_front_matter() -> None:
    text = "---\nlicense: mit\nlanguage:\n- en\ndate: 2024-01-02\n---\n# Title\n---\n"
    assert parse_front_matter(text) == {"license": "mit", "language": ["en"], "date": "2024-01-02"}
    assert parse_front_matter("# no metadata") is None
    assert parse_front_matter("---\n---\n") == {}


@pytest.mark.parametrize("text", ["---\nkey: [unclosed\n---\n", "---\n- a list\n---\n", "---\nlicense: mit\n"])
def test_bad_front_matter(text: str) -> None:
    with pytest.raises(BadRequestError):
        parse_front_matter(text)


def test_model_and_dataset_tags() -> None:
    card = {"tags": ["x"], "pipeline_tag": "text-generation", "library_name": "transformers", "language": ["en"],
            "license": "mit", "datasets": ["u/d"], "base_model": "u/base"}
    assert card_tags("model", card) == ["x", "text-generation", "transformers", "en", "license:mit", "dataset:u/d",
                                        "base_model:u/base"]
    ds = {"language": "fr", "task_categories": ["translation"], "license": "cc0-1.0"}
    assert card_tags("dataset", ds) == ["task_categories:translation", "language:fr", "license:cc0-1.0"]
    assert card_tags("model", None) == []
