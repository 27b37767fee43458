"""Mixed precision for one device and ``amp`` setting: autocast's dtype and the gradient scaler (fp16 only)."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


class Precision:
    """Autocast and the gradient scaler for one device and ``amp`` setting."""

    def __init__(self, amp: str, device: torch.device) -> None:
        self.device_type = device.type
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)
