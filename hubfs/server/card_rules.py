"""What the Hub checks in a card's metadata (``/api/validate-yaml`` and commits of ``README.md``).

The license is a known license id or ``other``; ``model-index`` is a list of ``{name, results}`` with
each result's ``task.type``, ``dataset.{type,name}`` and ``metrics[].{type,value}``; the known fields
have their types. Messages are the Hub's (joi style: ``"license" must be one of [...]``). Unknown
fields are free.
"""

from __future__ import annotations

from typing import Any

LICENSES = (
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0",
    "cdla-sharing-1.0", "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0",
    "etalab-2.0", "eupl-1.1", "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "h-research", "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr",
    "mpl-2.0", "odc-by", "odbl", "openmdw-1.0", "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa",
    "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "fair-noncommercial-research-license",
    "llama2", "llama3", "llama3.1", "llama3.2", "llama3.3", "llama4", "gemma", "unknown", "other",
)
_LICENSE_SET = frozenset(LICENSES)
SPACE_SDKS = ("gradio", "streamlit", "docker", "static")
SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
STRING_OR_LIST = ("language", "datasets", "metrics", "base_model", "tags", "license")
STRINGS = ("pipeline_tag", "library_name", "license_name", "license_link", "thumbnail", "pretty_name",
           "title", "emoji", "sdk_version", "app_file", "short_description", "base_model_relation")
BOOLS = ("pinned",)


def check_card(repo_type: str, card: dict[str, Any] | None) -> list[str]:
    """The Hub's complaints about a card's metadata (empty: valid)."""
    if not card:
        return []
    errors: list[str] = []
    for key in STRINGS:
        if key in card and not isinstance(card[key], str):
            errors.append(f'"{key}" must be a string')
    for key in BOOLS:
        if key in card and not isinstance(card[key], bool):
            errors.append(f'"{key}" must be a boolean')
    for key in STRING_OR_LIST:
        if key in card and card[key] is not None and not _string_or_strings(card[key]):
            errors.append(f'"{key}" must be one of [string, array]')
    if card.get("base_model") in ("", []):
        errors.append('"base_model" is not allowed to be empty')
    errors += _check_license(card.get("license"))
    if "model-index" in card:
        errors += _check_model_index(card["model-index"])
    if repo_type == "space":
        errors += _check_space(card)
    return errors


def _string_or_strings(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _check_license(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    if any(v not in _LICENSE_SET for v in values):
        return [f'"license" must be one of [{", ".join(LICENSES)}]']
    return []


def _check_space(card: dict[str, Any]) -> list[str]:
    errors = []
    if "sdk" in card and card["sdk"] not in SPACE_SDKS:
        errors.append(f'"sdk" must be one of [{", ".join(SPACE_SDKS)}]')
    for key in ("colorFrom", "colorTo"):
        if key in card and card[key] not in SPACE_COLORS:
            errors.append(f'"{key}" must be one of [{", ".join(SPACE_COLORS)}]')
    if "app_port" in card and (not isinstance(card["app_port"], int) or isinstance(card["app_port"], bool)):
        errors.append('"app_port" must be a number')
    return errors


def _check_model_index(value: Any) -> list[str]:
    """``model-index``: [{name, results: [{task: {type}, dataset: {type, name}, metrics: [{type, value}]}]}]."""
    if not isinstance(value, list):
        return ['"model-index" must be an array']
    errors: list[str] = []
    for i, model in enumerate(value):
        at = f"model-index[{i}]"
        if not isinstance(model, dict):
            errors.append(f'"{at}" must be of type object')
            continue
        errors += _required(model, at, "name", str)
        results = model.get("results")
        if results is None:
            errors.append(f'"{at}.results" is required')
            continue
        if not isinstance(results, list):
            errors.append(f'"{at}.results" must be an array')
            continue
        for j, result in enumerate(results):
            errors += _check_result(result, f"{at}.results[{j}]")
    return errors


def _check_result(result: Any, at: str) -> list[str]:
    if not isinstance(result, dict):
        return [f'"{at}" must be of type object']
    errors: list[str] = []
    for key, fields in (("task", ("type",)), ("dataset", ("type", "name"))):
        part = result.get(key)
        if part is None:
            errors.append(f'"{at}.{key}" is required')
        elif not isinstance(part, dict):
            errors.append(f'"{at}.{key}" must be of type object')
        else:
            for field in fields:
                errors += _required(part, f"{at}.{key}", field, str)
    metrics = result.get("metrics")
    if metrics is None:
        errors.append(f'"{at}.metrics" is required')
    elif not isinstance(metrics, list):
        errors.append(f'"{at}.metrics" must be an array')
    else:
        for k, metric in enumerate(metrics):
            mat = f"{at}.metrics[{k}]"
            if not isinstance(metric, dict):
                errors.append(f'"{mat}" must be of type object')
                continue
            errors += _required(metric, mat, "type", str)
            if "value" not in metric:
                errors.append(f'"{mat}.value" is required')
    return errors


def _required(obj: dict[str, Any], at: str, key: str, kind: type) -> list[str]:
    if key not in obj or obj[key] is None:
        return [f'"{at}.{key}" is required']
    if not isinstance(obj[key], kind):
        return [f'"{at}.{key}" must be a {kind.__name__.replace("str", "string")}']
    return []
