"""Model, dataset and space cards: README.md YAML front matter -> cardData and search tags.

Tags follow the Hub's facets, so ``list_models(filter=...)`` finds a repo by task (pipeline_tag),
library, language, license, datasets, base model and free tags, and ``list_datasets`` by
``language:xx``, ``task_categories:...``, ``license:...``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import anyio
import yaml
from starlette.concurrency import run_in_threadpool

from hubfs.errors import BadRequestError, PayloadTooLargeError

MAX_YAML_BYTES = 512 * 1024
"""Largest front matter (UTF-8 bytes of the YAML between the ``---`` lines) that is parsed."""
MAX_YAML_NODES = 100_000
"""Most YAML nodes a card may expand to, counting every alias as a copy of what it names."""
MAX_YAML_CHARS = 512 * 1024
"""Most scalar characters a card may expand to (aliases counted as copies)."""
MAX_YAML_DEPTH = 100
"""Deepest nesting of collections a card may expand to."""
MAX_YAML_ALIASES = 1_000
"""Most alias references in one card."""
MAX_CARD_JSON_BYTES = 512 * 1024
"""Largest cardData (as JSON) that is kept and served."""
_README_WINDOW = MAX_YAML_BYTES + 64 * 1024
"""Characters of a README looked at for its front matter; past them nothing is read."""

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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

    Bounded: raises PayloadTooLargeError when the YAML is over MAX_YAML_BYTES or its cardData over
    MAX_CARD_JSON_BYTES, BadRequestError when it is malformed, not a mapping, or expands (through
    aliases) past the node, character, depth or alias limits. No unbounded work is done first.
    """
    source = front_matter_source(text)
    if source is None:
        return None
    data = load_bounded(source)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadRequestError("README.md metadata must be a YAML mapping.")
    card: dict[str, Any] = _jsonable(data)
    if len(json.dumps(card).encode()) > MAX_CARD_JSON_BYTES:
        raise PayloadTooLargeError(f"README.md metadata is larger than {MAX_CARD_JSON_BYTES} bytes as JSON.")
    return card


def readme_text(blob: bytes) -> str:
    """The part of a README blob that can hold its front matter, decoded (bad UTF-8 replaced)."""
    return blob[: 4 * _README_WINDOW].decode("utf-8", "replace")


def front_matter_source(text: str) -> str | None:
    """The YAML text between a leading ``---`` line and the next one; None without a leading ``---``.

    Only the first _README_WINDOW characters are split into lines. Raises BadRequestError when
    the closing line is missing, PayloadTooLargeError when the YAML is over MAX_YAML_BYTES.
    """
    text = text.lstrip("\ufeff")
    window = text[:_README_WINDOW]
    lines = window.splitlines()
    truncated = len(text) > len(window)
    if truncated and lines:
        lines.pop()  # may be cut short
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None and truncated:
        raise _too_large()
    if end is None:
        raise BadRequestError("README.md metadata starts with '---' but has no closing '---' line.")
    source = "\n".join(lines[1:end])
    if len(source.encode("utf-8", "replace")) > MAX_YAML_BYTES:
        raise _too_large()
    return source


def _too_large() -> PayloadTooLargeError:
    return PayloadTooLargeError(f"README.md metadata (YAML front matter) is larger than {MAX_YAML_BYTES} bytes.")


def load_bounded(source: str) -> Any:
    """``yaml.safe_load`` of ``source``, refusing (BadRequestError) documents that expand past the limits.

    The node graph is composed first and measured; Python objects are built only when it fits.
    """
    if len(source.encode("utf-8", "replace")) > MAX_YAML_BYTES:
        raise _too_large()
    loader = _LOADER(source)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise BadRequestError(f"Invalid YAML in README.md metadata: {_describe(exc)}") from None
    except RecursionError:
        raise BadRequestError(f"README.md metadata nests deeper than {MAX_YAML_DEPTH} levels.") from None
    finally:
        loader.dispose()


def _describe(exc: yaml.YAMLError) -> str:
    """The problem and where it is, without quoting the document (it may be private)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return f"{exc.problem}{where}"
    return type(exc).__name__


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Raise BadRequestError unless the graph under ``root``, aliases expanded, fits the limits.

    Iterative post-order walk; each shared (aliased) node is measured once and reused, so the cost
    is linear in the composed graph however large its expansion would be. Cycles are refused.
    """
    sizes: dict[int, tuple[int, int, int]] = {}  # id(node) -> (nodes, chars, depth), expanded
    open_nodes: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            sizes[key] = _measure(node, sizes)
            open_nodes.discard(key)
        elif key in sizes or key in open_nodes:
            if key in open_nodes:
                raise BadRequestError("README.md metadata contains a recursive YAML alias.")
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise BadRequestError(f"README.md metadata uses more than {MAX_YAML_ALIASES} YAML aliases.")
        else:
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in reversed(_children(node)))


def _measure(node: yaml.Node, sizes: dict[int, tuple[int, int, int]]) -> tuple[int, int, int]:
    """(nodes, chars, depth) of ``node`` expanded, from its measured children; raises past the limits."""
    kids = [sizes[id(child)] for child in _children(node)]
    nodes = 1 + sum(k[0] for k in kids)
    chars = len(node.value) if isinstance(node, yaml.ScalarNode) else sum(k[1] for k in kids)
    depth = 1 + max((k[2] for k in kids), default=0)
    if nodes > MAX_YAML_NODES:
        raise BadRequestError(f"README.md metadata expands to more than {MAX_YAML_NODES} YAML nodes.")
    if chars > MAX_YAML_CHARS:
        raise BadRequestError(f"README.md metadata expands to more than {MAX_YAML_CHARS} characters.")
    if depth > MAX_YAML_DEPTH:
        raise BadRequestError(f"README.md metadata nests deeper than {MAX_YAML_DEPTH} levels.")
    return nodes, chars, depth


class CardParser:
    """Parses card front matter with at most ``parallel`` parses at once (one per hub)."""

    def __init__(self, parallel: int = 2) -> None:
        self._slots = threading.BoundedSemaphore(parallel)

    def front_matter(self, text: str) -> dict[str, Any] | None:
        """parse_front_matter(text) once a slot is free (blocks the calling thread until then)."""
        with self._slots:
            return parse_front_matter(text)

    async def front_matter_async(self, text: str, *, wait: float = 10.0) -> dict[str, Any] | None:
        """parse_front_matter(text) for an ``async`` handler: waits for a slot without holding a thread,
        parses in the thread pool; a 429 when no slot frees up within ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while not self._slots.acquire(blocking=False):
            if time.monotonic() >= deadline:
                raise BadRequestError("Too many README.md metadata checks at once; retry shortly.", status=429)
            await anyio.sleep(0.02)
        try:
            return await run_in_threadpool(parse_front_matter, text)
        finally:
            self._slots.release()


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


def space_readme(name: str, sdk: str) -> str:
    """The README a new Space starts with on the Hub: its configuration front matter."""
    title = " ".join(part.capitalize() for part in name.replace("_", "-").split("-") if part) or name
    return (f"---\ntitle: \"{title}\"\nemoji: 🚀\ncolorFrom: blue\ncolorTo: purple\nsdk: {sdk}\npinned: false\n---\n\n"
            "Check out the configuration reference at https://huggingface.co/docs/hub/spaces-config-reference\n")
