"""Model, dataset and space cards: README.md YAML front matter -> cardData and search tags.

Tags follow the Hub's facets, so ``list_models(filter=...)`` finds a repo by task (pipeline_tag),
library, language, license, datasets, base model and free tags, and ``list_datasets`` by
``language:xx``, ``task_categories:...``, ``license:...``.
"""

from __future__ import annotations

from typing import Any

import yaml

from hubfs.errors import BadRequestError

DEFAULT_GITATTRIBUTES = """\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.avro filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gguf filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""


def parse_front_matter(text: str) -> dict[str, Any] | None:
    """The YAML between a leading ``---`` line and the next ``---`` line; None if there is none.

    Raises BadRequestError when the YAML is malformed or is not a mapping.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return None
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise BadRequestError("README.md metadata starts with '---' but has no closing '---' line.") from None
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise BadRequestError(f"Invalid YAML in README.md metadata: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequestError("README.md metadata must be a YAML mapping.")
    return _jsonable(data)


def _jsonable(value: Any) -> Any:
    """YAML can produce dates and other types JSON cannot carry; turn them into strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def card_tags(repo_type: str, card: dict[str, Any] | None) -> list[str]:
    """The search tags a card gives a repo, in the Hub's spelling for that repo type."""
    if not card:
        return []
    tags: list[str] = []

    def add(*values: str) -> None:
        for v in values:
            if v and v not in tags:
                tags.append(v)

    add(*_as_list(card.get("tags")))
    if repo_type == "dataset":
        for key in ("task_categories", "task_ids", "size_categories", "multilinguality", "source_datasets",
                    "annotations_creators", "language_creators", "modality", "format", "library"):
            add(*(f"{key}:{v}" for v in _as_list(card.get(key))))
        add(*(f"language:{v}" for v in _as_list(card.get("language"))))
        add(*(f"license:{v}" for v in _as_list(card.get("license"))))
        return tags
    add(*_as_list(card.get("pipeline_tag")))
    add(*_as_list(card.get("library_name")))
    add(*_as_list(card.get("language")))
    add(*(f"license:{v}" for v in _as_list(card.get("license"))))
    add(*(f"dataset:{v}" for v in _as_list(card.get("datasets"))))
    add(*(f"base_model:{v}" for v in _as_list(card.get("base_model"))))
    if repo_type == "space":
        add(*_as_list(card.get("sdk")))
    return tags
