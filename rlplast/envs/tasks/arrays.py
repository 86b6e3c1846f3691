"""The array namespace of the task functions: one formula for numpy arrays and torch tensors.

A task computes with ``xp = namespace(x)``, where ``x`` is one of its inputs: numpy itself for
numpy arrays (so the cpu backend's float64 numbers are exactly numpy's, call for call), and for
torch tensors a shim that answers numpy's names with torch's functions (the warp backend's
float32 views of the simulator, on its device). Only the names the tasks use are translated;
any other name is looked up on torch as it is (``square``, ``isfinite``, ``einsum``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# What the task functions take and return: float64 numpy on the cpu backend, torch on warp.
Array = np.ndarray | torch.Tensor


def _torch_dtype(dtype: Any) -> Any:
    """numpy's ``bool`` / ``float`` as torch's dtype (torch dtypes pass through)."""
    return {bool: torch.bool, float: torch.float32, int: torch.int64}.get(dtype, dtype)


class TorchNamespace:
    """numpy's names for torch functions (only where the two differ)."""

    @staticmethod
    def concatenate(arrays: Sequence[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(list(arrays), dim=axis)

    @staticmethod
    def clip(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
        return torch.clamp(x, low, high)

    @staticmethod
    def minimum(x: torch.Tensor, bound: float | torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, max=bound) if not isinstance(bound, torch.Tensor) else torch.minimum(x, bound)

    @staticmethod
    def maximum(x: torch.Tensor, bound: float | torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=bound) if not isinstance(bound, torch.Tensor) else torch.maximum(x, bound)

    @staticmethod
    def ones_like(x: torch.Tensor, dtype: Any = None) -> torch.Tensor:
        return torch.ones_like(x, dtype=_torch_dtype(dtype))

    @staticmethod
    def zeros_like(x: torch.Tensor, dtype: Any = None) -> torch.Tensor:
        return torch.zeros_like(x, dtype=_torch_dtype(dtype))

    @staticmethod
    def asarray(value: Any, like: torch.Tensor) -> torch.Tensor:
        """A constant (e.g. a numpy array bound from the model) as a tensor of ``like``'s dtype and device."""
        return torch.as_tensor(value, dtype=like.dtype, device=like.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


TORCH = TorchNamespace()


def namespace(x: Any) -> Any:
    """``numpy`` for a numpy array, the torch shim for a tensor."""
    return TORCH if isinstance(x, torch.Tensor) else np
