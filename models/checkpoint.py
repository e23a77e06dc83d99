"""Checkpoints: safetensors weights plus a meta JSON, loadable without unpickling anything.

Weights that come unchanged from a package (a frozen pretrained backbone) are not stored: the
loader rebuilds the configuration with its packaged weights and adds the trained ones, which
keeps the shipped default checkpoint small. A checkpoint's version is a hash of its weights
file, so an edge and a server can tell whether they run the same model.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.serialization import get_unsafe_globals_in_checkpoint

from splitcast.models.config import TOP_STAGE_STRIDE
from splitcast.models.errors import CheckpointError
from splitcast.models.registry import ModelConfig, SplitSystem, available, build

WEIGHTS_FILE = "model.safetensors"
META_FILE = "meta.json"
PACKAGED_DIR = Path(__file__).resolve().parent / "checkpoints"


def migrate_config(config: dict[str, Any]) -> dict[str, Any]:
    """A configuration written before its parts were typed (everything but the wire contract in
    one free-form `params` dict, the per-age policy as parallel lists in it), converted to
    `combiner`, `policy`, `network`, `bottleneck` and `trained`; a typed one is unchanged. The
    networks and their weights' version are the same."""
    if "params" not in config:
        return config
    params = dict(config["params"])
    policy: dict[str, list[dict[str, Any]]] = {}
    gains = params.pop("downlink_gain", None)
    if gains:
        policy["feature_fusion"] = [{"weight": g} for g in gains]
    late = bool(params.pop("late_average", False))
    weights = params.pop("late_weight", None) or []
    blurs = params.pop("late_blur", None) or [1]
    moved = params.pop("late_warped_weight", None) or [0.0]
    if weights:
        ages = max(len(weights), len(blurs), len(moved))  # each list's last entry covers older ages
        policy["late_average"] = [
            {"weight": _at(weights, age), "blur": _at(blurs, age), "warped_weight": _at(moved, age)}
            for age in range(ages)
        ]
    removed = sorted({"downlink_align", "align_hidden", "max_context_gap"} & set(params))
    if removed and (params.get("downlink_align") or params.get("max_context_gap", 1) != 1):
        raise CheckpointError(
            f"this checkpoint was trained with {', '.join(removed)}, experiments that were "
            "removed from splitcast (commit 84dc14e); load it with an earlier version"
        )
    for name in removed:
        params.pop(name)
    top = params.pop("remote_top_from", TOP_STAGE_STRIDE)
    trained = {
        "freeze_remote_backbone": bool(params.pop("freeze_remote_backbone", False)),
        "remote_trained_from": top if params.pop("train_remote_top", False) else None,
    }
    typed = {k: v for k, v in config.items() if k != "params"}
    return typed | {
        "combiner": typed.get("combiner", "late_average" if late else "feature_fusion"),
        "policy": typed.get("policy", {}) | policy,
        "bottleneck": params.pop("bottleneck", None),
        "trained": trained,
        "network": params,
    }


def _at(values: list[Any], age: int) -> Any:
    return values[min(age, len(values) - 1)]


def packaged_prefixes(system: SplitSystem) -> list[str]:
    """State-dict prefixes whose weights are loaded from packages, not trained."""
    prefixes = []
    trained_parts = system.config.trained
    if trained_parts.freeze_remote_backbone:
        backbone = system.remote.backbone
        trained_from = trained_parts.remote_trained_from
        trained = (
            set()
            if trained_from is None
            else {m for stage in backbone.stages_from(trained_from) for m in stage}
        )
        prefixes += _prefixes_outside(backbone, trained, "remote.backbone.")
    frozen = system.local.stages.frozen
    if frozen is not None:
        name = next(n for n, m in system.local.named_modules() if m is frozen)
        prefixes.append(f"local.{name}.")
    return prefixes


def _prefixes_outside(module: nn.Module, inside: set[nn.Module], prefix: str) -> list[str]:
    """Prefixes covering every weight of `module` except those of the `inside` submodules."""
    if not inside:
        return [prefix]
    prefixes = []
    for name, child in module.named_children():
        if child in inside:
            continue
        if inside & set(child.modules()):
            prefixes += _prefixes_outside(child, inside, f"{prefix}{name}.")
        else:
            prefixes.append(f"{prefix}{name}.")
    return prefixes


def system_state(system: SplitSystem) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}.{k}": v
        for prefix, module in system.modules().items()
        for k, v in module.state_dict().items()
    }


def load_system_state(
    system: SplitSystem, state: dict[str, torch.Tensor], strict: bool = True
) -> None:
    """Put a `system_state` dict (or a subset, with strict=False) into the system's modules."""
    for prefix, module in system.modules().items():
        part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(f"{prefix}.")}
        module.load_state_dict(part, strict=strict)


def git_revision() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def save_checkpoint(
    system: SplitSystem, folder: Path, meta: dict[str, Any], half: bool = False
) -> str:
    """Write weights (trained parts only) and meta JSON into `folder`; returns the version."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = tuple(packaged_prefixes(system))
    tensors = {}
    for name, tensor in system_state(system).items():
        if name.startswith(skip):
            continue
        tensor = tensor.detach().cpu().contiguous()
        tensors[name] = tensor.half() if half and tensor.is_floating_point() else tensor
    partial = folder / f"{WEIGHTS_FILE}.partial"
    save_file(tensors, str(partial))
    version = hashlib.sha256(partial.read_bytes()).hexdigest()[:12]
    partial.chmod(0o644)
    partial.rename(folder / WEIGHTS_FILE)
    config = system.config.to_dict() | {"version": version}
    record = {
        "config": config,
        "packaged_prefixes": list(skip),
        "git_revision": git_revision(),
        **meta,
    }
    (folder / META_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return version


def export_checkpoint(source: str | Path, destination: Path, half: bool = True) -> str:
    """Copy a trained checkpoint (e.g. into the package as `default`), in float16 by default
    to keep it small; returns the new version."""
    system, meta = load_checkpoint(source)
    record = {
        k: v for k, v in meta.items() if k not in ("config", "packaged_prefixes", "git_revision")
    }
    record["exported_from"] = {
        "path": str(source),
        "version": meta["config"]["version"],
        "git_revision": meta.get("git_revision"),
    }
    return save_checkpoint(system, destination, record, half=half)


def checkpoint_folder(name_or_path: str | Path) -> Path:
    """A packaged checkpoint by name (e.g. `default`) or a folder path."""
    packaged = PACKAGED_DIR / str(name_or_path)
    if (packaged / META_FILE).is_file():
        return packaged
    folder = Path(name_or_path)
    if (folder / META_FILE).is_file():
        return folder
    raise CheckpointError(
        f"no model named {str(name_or_path)!r}: not a configuration ({', '.join(available())}), "
        f"not a packaged checkpoint ({', '.join(packaged_checkpoints()) or 'none'}), "
        f"and not a folder with {META_FILE} and {WEIGHTS_FILE}"
    )


def packaged_checkpoints() -> list[str]:
    return (
        sorted(p.name for p in PACKAGED_DIR.iterdir() if (p / META_FILE).is_file())
        if PACKAGED_DIR.is_dir()
        else []
    )


def checkpoint_config(name_or_path: str | Path) -> ModelConfig:
    """A checkpoint's configuration alone (migrated), without building its networks."""
    folder = checkpoint_folder(name_or_path)
    return _config(folder, read_meta(folder))


def read_meta(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's meta record; a damaged one is a `CheckpointError` naming it, so a
    command ends with one line rather than the JSON parser's traceback."""
    try:
        meta = json.loads((folder / META_FILE).read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{META_FILE} in {folder} is damaged (not JSON): {exc}") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{META_FILE} in {folder} has no configuration (its 'config')")
    if not isinstance(meta.get("packaged_prefixes"), list):
        raise CheckpointError(f"{META_FILE} in {folder} has no list of packaged_prefixes")
    return meta


def _config(folder: Path, meta: dict[str, Any]) -> ModelConfig:
    try:
        return ModelConfig.from_dict(migrate_config(meta["config"]))
    except ValueError as exc:
        raise CheckpointError(f"{META_FILE} in {folder}: its configuration: {exc}") from None


def load_checkpoint(name_or_path: str | Path) -> tuple[SplitSystem, dict[str, Any]]:
    """Rebuild the configuration, add the trained weights; returns the system and its meta.
    A damaged or mismatched file is a `CheckpointError` that names it and what is wrong."""
    folder = checkpoint_folder(name_or_path)
    meta = read_meta(folder)
    config = _config(folder, meta)
    system = build(config, pretrained=bool(meta["packaged_prefixes"]))
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder} has {META_FILE} but no {WEIGHTS_FILE}")
    try:
        stored = load_file(str(weights))
    except SafetensorError as exc:
        raise _damaged(weights, exc) from None
    expected = system_state(system)
    packaged = tuple(meta["packaged_prefixes"])
    missing = sorted(k for k in expected if k not in stored and not k.startswith(packaged))
    unexpected = sorted(k for k in stored if k not in expected)
    if missing or unexpected:
        lists = (("missing", missing), ("unexpected", unexpected))
        named = "; ".join(f"{what} {names[:5]}" for what, names in lists if names)
        raise CheckpointError(f"{weights} does not fit {config.name}: {named}")
    wrong = [k for k, v in stored.items() if v.shape != expected[k].shape]
    if wrong:
        raise CheckpointError(
            f"{weights} does not fit {config.name}: {wrong[0]} is "
            f"{list(stored[wrong[0]].shape)}, the model's {list(expected[wrong[0]].shape)}"
            + (f" ({len(wrong) - 1} more differ)" if len(wrong) > 1 else "")
        )
    load_system_state(system, {k: v.to(expected[k].dtype) for k, v in stored.items()}, False)
    return system.eval(), meta


def _damaged(path: Path, detail: object) -> CheckpointError:
    return CheckpointError(f"{path.name} in {path.parent} is damaged or truncated: {detail}")


def stored_in_half(name_or_path: str | Path) -> bool:
    """Whether a checkpoint keeps its floating-point weights in float16 (as exported); reads
    only the weights file's header."""
    weights = checkpoint_folder(name_or_path) / WEIGHTS_FILE
    try:
        with safe_open(str(weights), framework="pt") as stored:
            names = stored.keys()
            return any(stored.get_slice(name).get_dtype() == "F16" for name in names)
    except SafetensorError as exc:
        raise _damaged(weights, exc) from None


def load_training_state(path: Path, system: SplitSystem) -> dict[str, Any]:
    """Put a training state's weights into `system`; returns the state (optimizer, counters).
    Only tensors and plain values are unpickled. Anything else is refused with our own message:
    torch's suggests `weights_only=False`, which would run whatever code the file names."""
    try:
        with warnings.catch_warnings():  # torch's note on the pickle protocol of a refused file
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(_refusal(path)) from None
    except (RuntimeError, EOFError, KeyError) as exc:
        detail = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise _damaged(path, detail) from None
    parts = ("model", "optimizer", "epoch", "step")
    if not isinstance(state, dict) or not all(part in state for part in parts):
        raise CheckpointError(f"{path} is not a training state (it needs {', '.join(parts)})")
    try:
        load_system_state(system, state["model"])
    except RuntimeError as exc:
        raise CheckpointError(
            f"{path} does not fit {system.config.name} (saved for another --config?): "
            + " ".join(str(exc).split())[:300]
        ) from None
    return state


def load_history(path: Path) -> list[dict[str, Any]]:
    """A training run's per-epoch history (none before its first epoch ends)."""
    if not path.is_file():
        return []
    try:
        history = json.loads(path.read_text())
    except ValueError as exc:  # UnicodeDecodeError included
        raise CheckpointError(f"{path} is damaged: {exc}") from None
    if not isinstance(history, list):
        raise CheckpointError(f"{path} is damaged: it must hold a list of epochs")
    return history


def _refusal(path: Path) -> str:
    """Why a file torch's weights-only unpickler stopped on is refused, naming what it would
    call where torch can tell (in its zip format) without unpickling it."""
    try:
        names = sorted(get_unsafe_globals_in_checkpoint(path))
    except (ValueError, RuntimeError):  # a bare pickle, or a damaged zip
        names = []
    held = (
        f"unpickling it would call {', '.join(names)}, which can run any code"
        if names
        else "it holds more than tensors and plain values (objects whose unpickling could run "
        "code, or damage)"
    )
    return f"{path.name} in {path.parent} was refused: {held}; nothing in it was loaded"


def load_system_with_meta(name_or_path: str | Path) -> tuple[SplitSystem, dict[str, Any]]:
    """A registered configuration by name (its initial weights, empty meta) or a trained
    checkpoint with its meta."""
    if str(name_or_path) in available():
        return build(str(name_or_path)), {}
    return load_checkpoint(name_or_path)


def load_system(name_or_path: str | Path) -> SplitSystem:
    return load_system_with_meta(name_or_path)[0]
