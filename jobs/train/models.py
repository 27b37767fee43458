"""Building a torchvision classifier (or a user's own model), loading weights into it with errors that say what does
not fit, and the digest of its weights that the final record holds for every rank."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
import torchvision

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.model_names import MODEL_NAMES, unknown_model_message
from clusterdeck.jobs.model_ref import is_model_ref
from clusterdeck.jobs.train.user_model import build_user_model


def build_model(
    name: str, num_classes: int, model_args: dict[str, Any] | None = None, field: str = "train.model"
) -> torch.nn.Module:
    """A torchvision builder by name, or a user's ``module:callable`` called with ``num_classes`` and
    ``model_args``."""
    if is_model_ref(name):
        return build_user_model(name, num_classes, model_args or {}, field)
    if name not in MODEL_NAMES or name not in torchvision.models.list_models(module=torchvision.models):
        raise UserError(f"{field}: {unknown_model_message(name)}")
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if name in ("googlenet", "inception_v3"):
        kwargs["aux_logits"] = False  # the auxiliary heads only complicate the loss; torchvision's recipe drops them
        kwargs["init_weights"] = True
    return torchvision.models.get_model(name, **kwargs)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a torchvision weights file, a plain state_dict, or one of our checkpoints."""
    return state_dict_of(load_file(path), path)


def load_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # a weights file must not run code
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot read weights: {first}") from None


def state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: holds no state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], path: Path, field: str) -> None:
    """Loads ``weights``; a class-count or architecture mismatch is a clear error naming both sides."""
    own = model.state_dict()
    head = _head_key(own)
    if head in weights and weights[head].shape[0] != own[head].shape[0]:  # other widths: 'does not fit'
        raise UserError(
            f"{field}: {path} has {weights[head].shape[0]} classes, the model is built for {own[head].shape[0]} "
            f"(the shard set's class count); use weights trained on the same classes"
        )
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise UserError(
            f"{field}: {path} does not fit {type(model).__name__}: {len(missing)} missing, {len(unexpected)} "
            f"unexpected and {len(wrong)} mis-shaped tensors (first: {first}); is it for another model?"
        )
    model.load_state_dict(weights)


def _head_key(state: dict[str, torch.Tensor]) -> str:
    """The classifier's weight: the last 2-D tensor of the model."""
    keys = [k for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return keys[-1] if keys else ""


def num_classes_of(weights: dict[str, torch.Tensor]) -> int | None:
    key = _head_key(weights)
    return int(weights[key].shape[0]) if key else None


def weights_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
