"""Model-card front matter and the Hub's search facets."""

from __future__ import annotations

import pytest

from hubfs.errors import BadRequestError, PayloadTooLargeError
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


LAUGHS = "---\na: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
    f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh")) + "---\n"


@pytest.mark.parametrize("text, error", [
    (LAUGHS, BadRequestError),  # 9**8 strings from ~300 bytes
    ("---\na: &a [1, *a]\n---\n", BadRequestError),  # recursive alias
    ("---\nx: " + "[" * 200 + "]" * 200 + "\n---\n", BadRequestError),  # too deep
    ("---\na: &a x\n" + "".join(f"k{i}: *a\n" for i in range(1001)) + "---\n", BadRequestError),  # aliases
    ("---\nx: &x " + "y" * 1000 + "\n" + "".join(f"k{i}: *x\n" for i in range(600)) + "---\n", BadRequestError),
    ("---\nx: " + "y" * (600 << 10) + "\n---\n", PayloadTooLargeError),
    ("---\n" + "k: v\n" * (2 << 20), PayloadTooLargeError),  # no closing line within the window
])
def test_front_matter_limits(text: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_front_matter(text)


def test_front_matter_aliases_within_limits() -> None:
    text = "---\nbase: &b {license: mit}\nmodel: {<<: *b, tags: &t [a, b]}\nmore: *t\n---\n"
    assert parse_front_matter(text) == {"base": {"license": "mit"}, "model": {"license": "mit", "tags": ["a", "b"]},
                                        "more": ["a", "b"]}
