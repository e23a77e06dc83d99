"""Named link profiles (`lan`, `wifi`, `lte`, `5g`, `satellite`) and user profiles from YAML.

A profile file maps names to `{description, uplink, downlink, loss}`; `uplink` and
`downlink` hold `DelaySpec` fields plus `rate_mbit`, and `loss` holds `LossSpec` fields for
both directions (see profiles.yaml next to this module).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from splitcast.netem.shaping import DelaySpec, DirectionSpec, LossSpec, ShapingError
from splitcast.yaml_files import YamlSyntaxError, parse_yaml

BUILT_IN = Path(__file__).with_name("profiles.yaml")
_DELAY_KEYS = {f.name for f in fields(DelaySpec)}
_LOSS_KEYS = {f.name for f in fields(LossSpec)}


@dataclass(frozen=True)
class LinkProfile:
    name: str
    description: str
    uplink: DirectionSpec
    downlink: DirectionSpec


def _read(path: Path) -> dict[str, Any]:
    try:
        content = parse_yaml(path.read_text(), path)
    except YamlSyntaxError as exc:
        raise ShapingError(str(exc)) from None
    if not isinstance(content, dict):
        raise ShapingError(f"{path} must map profile names to settings")
    return content


def built_in_profiles() -> list[str]:
    return list(_read(BUILT_IN))


def _direction(entry: dict[str, Any], loss: LossSpec, where: str) -> DirectionSpec:
    unknown = set(entry) - _DELAY_KEYS - {"rate_mbit"}
    if unknown:
        raise ShapingError(f"{where}: unknown settings {sorted(unknown)}")
    delay = DelaySpec(**{k: v for k, v in entry.items() if k in _DELAY_KEYS})
    return DirectionSpec(delay, entry.get("rate_mbit"), loss=loss)


def load_profile(name_or_path: str) -> LinkProfile:
    """A built-in profile by name, or `FILE.yaml` (its only profile) or `FILE.yaml:NAME`."""
    path_text, _, wanted = name_or_path.partition(":")
    path = Path(path_text)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ShapingError(f"profile file not found: {path}")
        profiles = _read(path)
        if not wanted:
            if len(profiles) != 1:
                raise ShapingError(f"{path} holds {sorted(profiles)}; pick one as {path}:NAME")
            wanted = next(iter(profiles))
    else:
        profiles, wanted = _read(BUILT_IN), name_or_path
    if wanted not in profiles:
        raise ShapingError(
            f"unknown link profile {wanted!r}; built in: {', '.join(built_in_profiles())}, "
            "or give a YAML file"
        )
    entry = profiles[wanted] or {}
    loss_entry = entry.get("loss") or {}
    unknown = set(loss_entry) - _LOSS_KEYS
    if unknown:
        raise ShapingError(f"profile {wanted!r} loss: unknown settings {sorted(unknown)}")
    loss = LossSpec(**loss_entry)
    return LinkProfile(
        wanted,
        entry.get("description", ""),
        _direction(entry.get("uplink") or {}, loss, f"profile {wanted!r} uplink"),
        _direction(entry.get("downlink") or {}, loss, f"profile {wanted!r} downlink"),
    )
