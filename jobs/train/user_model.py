"""A user's model, ``module:callable``, imported and built in the job: every way it can go wrong is one line that
names the spec's field, never a traceback."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import torch

from clusterdeck.jobs.errors import UserError
from clusterdeck.jobs.model_ref import split_ref


def build_user_model(ref: str, num_classes: int, model_args: dict[str, Any], field: str) -> torch.nn.Module:
    """``ref``'s callable called with ``num_classes=`` and ``model_args``; it must return an ``nn.Module``."""
    module_name, func_name = split_ref(ref)
    if os.getcwd() not in sys.path:  # the job's working directory, as at submit time (PYTHONPATH is on sys.path)
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        where = f"in {os.getcwd()} or on PYTHONPATH" if exc.name == module_name else f"({_first_line(exc)})"
        raise UserError(f"{field}: cannot import module {module_name!r} of {ref!r} {where}") from None
    except Exception as exc:  # the user's code failed while importing: say how, in one line
        raise UserError(f"{field}: importing {module_name!r} failed: {_first_line(exc)}") from None
    func = getattr(module, func_name, None)
    if func is None:
        raise UserError(f"{field}: module {module_name!r} ({module.__file__}) has no {func_name!r}")
    if not callable(func):
        raise UserError(f"{field}: {ref!r} is a {type(func).__name__}, not a callable that builds a model")
    call = ", ".join([f"num_classes={num_classes}", *(f"{k}={v!r}" for k, v in model_args.items())])
    try:
        model = func(num_classes=num_classes, **model_args)
    except Exception as exc:
        raise UserError(f"{field}: {ref}({call}) failed: {_first_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{field}: {ref}({call}) returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
