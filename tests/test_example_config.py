"""docs/example-config.toml loads, uses every config key, and the README names every key.

Why: the example file and the README's configuration reference are where a
shop's developer learns the config. Both are derived here from
``bot.config.ShopConfig`` itself, so a key someone adds to the model fails
these tests until it is shown in the example and explained in the README.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Iterator, get_args, get_origin

from pydantic import BaseModel

from bot.config import ShopConfig, load_config
from integrations.sms import SmsGateway

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example-config.toml"
README = ROOT / "README.md"
# A README code block that starts with this line is a verbatim excerpt of the example file.
EXCERPT_MARKER = "# docs/example-config.toml"
# The gateway URL is the SMS_GATEWAY_URL setting; the app overrides any "url" in [sms_gateway].
SMS_KEYS_FROM_SETTINGS = {"url"}


def _shape(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """("one" | "list" | "dict", model) when a field holds config tables, else None.

    Covers the shapes ShopConfig uses: ``Model``, ``Model | None``,
    ``list[Model]`` and ``dict[str, Model]``.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "one", annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args:
        inner = _shape(args[0])
        return ("list", inner[1]) if inner and inner[0] == "one" else None
    if origin is dict and len(args) == 2:
        inner = _shape(args[1])
        return ("dict", inner[1]) if inner and inner[0] == "one" else None
    for arg in args:  # X | None
        if arg is not type(None):
            found = _shape(arg)
            if found:
                return found
    return None


def key_paths(model: type[BaseModel], data: Any = None, prefix: str = "") -> set[str]:
    """Dotted key paths ("policy.quiet_hours.start", "surveys.questions.followups.when").

    Without ``data``: every key the model defines. With ``data`` (parsed TOML):
    the keys that data actually gives. List items and the names of
    ``[touchpoints.<name>]`` / ``[rate_limits.<name>]`` tables add no path segment.
    """
    found: set[str] = set()
    for name, field in model.model_fields.items():
        if data is not None and name not in data:
            continue
        path = f"{prefix}{name}"
        found.add(path)
        shape = _shape(field.annotation)
        if shape is None:
            continue
        kind, inner = shape
        if data is None:
            children: list[Any] = [None]
        else:
            value = data[name]
            children = [value] if kind == "one" else list(value) if kind == "list" else list(value.values())
        for child in children:
            if child is None or isinstance(child, dict):
                found |= key_paths(inner, child, f"{path}.")
    return found


def example_data() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text("utf-8"))


def code_spans(text: str) -> Iterator[str]:
    """Inline code (`...`) and the lines of fenced code blocks."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    yield from (line for block in fenced for line in block.splitlines())
    without_blocks = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    yield from re.findall(r"`([^`\n]+)`", without_blocks)


# --------------------------------------------------------------------------- the walker itself


def test_the_key_walker_reaches_nested_tables_lists_and_named_tables() -> None:
    paths = key_paths(ShopConfig)
    for expected in (
        "shop_name",
        "policy.quiet_hours.start",
        "policy.caps.defer_priority",
        "surveys.questions.followups.when",
        "surveys.reward.category",
        "categories.name.es",
        "touchpoints.whatsapp_template.params",
        "rate_limits.chat_burst",
        "sms_gateway",
    ):
        assert expected in paths
    given = key_paths(ShopConfig, {"policy": {"caps": {"per_day": 1}}, "touchpoints": {"x": {"purpose": "p"}}})
    assert given == {"policy", "policy.caps", "policy.caps.per_day", "touchpoints", "touchpoints.purpose"}


# --------------------------------------------------------------------------- the example file


def test_the_example_config_loads_as_the_shop_wrote_it() -> None:
    config = load_config(str(EXAMPLE))
    assert config.shop_name == "Bergfink Outdoor"
    assert config.locales == ["de", "en", "es"]
    assert len(config.categories) == 10  # the example's own catalog, not the built-in one
    assert config.support.timezone == "Europe/Berlin"
    assert config.policy.quiet_hours.start == "20:00"
    survey = config.survey("order_feedback")
    assert survey is not None and survey.reward is not None and survey.reward.category == "camp_kitchen"
    assert config.touchpoints["back_in_stock"].whatsapp_template is not None
    assert config.touchpoints["pickup_ready"].transactional


def test_the_example_config_gives_every_key_of_the_shop_config() -> None:
    missing = sorted(key_paths(ShopConfig) - key_paths(ShopConfig, example_data()))
    assert not missing, f"docs/example-config.toml does not show these keys: {missing}"


def test_the_example_config_has_every_built_in_touchpoint() -> None:
    built_in = set(load_config(None).touchpoints)
    assert built_in <= set(example_data()["touchpoints"])


def test_the_example_sms_gateway_mapping_is_valid_and_complete() -> None:
    mapping = example_data()["sms_gateway"]
    gateway = SmsGateway(**mapping)  # extra="forbid": a misspelt key fails here
    assert gateway.webhook_auth == "jwt"
    missing = sorted(set(SmsGateway.model_fields) - SMS_KEYS_FROM_SETTINGS - set(mapping))
    assert not missing, f"[sms_gateway] in the example does not show: {missing}"


# --------------------------------------------------------------------------- the README


def test_the_readme_names_every_config_key_in_code() -> None:
    spans = list(code_spans(README.read_text("utf-8")))
    keys = {path.rsplit(".", 1)[-1] for path in key_paths(ShopConfig)}
    keys |= set(SmsGateway.model_fields)
    missing = sorted(k for k in keys if not any(re.search(rf"(?<![\w]){re.escape(k)}(?![\w])", s) for s in spans))
    assert not missing, f"README.md does not mention these config keys in code: {missing}"


def test_the_readme_excerpts_of_the_example_are_verbatim() -> None:
    readme = README.read_text("utf-8")
    example = EXAMPLE.read_text("utf-8")
    blocks = re.findall(r"^```toml\n(.*?)^```", readme, flags=re.S | re.M)
    excerpts = [b.split("\n", 1)[1] for b in blocks if b.startswith(EXCERPT_MARKER)]
    assert excerpts, "the README quotes the example's touchpoint rules"
    for excerpt in excerpts:
        assert excerpt in example, f"README excerpt no longer matches docs/example-config.toml:\n{excerpt[:300]}"
