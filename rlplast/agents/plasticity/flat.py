"""Parameters whose storage is a view of one flat buffer that an optimizer works on whole.

Adam's redo of recently reset weights (fresh.py) gathers and scatters elements of every parameter
each step; with the weights in one buffer that is one op where a loop over the tensors would
take one per parameter (on a CPU an op costs mostly its dispatch at these sizes). A parameter
keeps its identity (modules and plug-ins hold it) and gets its view of the buffer as ``.data``.
Whatever replaces a parameter's storage afterwards (a module's ``.to()``, assigning ``.data``)
unbinds it: :meth:`BoundParameters.ensure` notices by data pointer and binds again, copying the
current values in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class BoundParameters:
    """``params[i].data`` is ``views[i]``, a view of one buffer, and stays so.

    Args:
        params: the parameters.
        views: one view per parameter, shaped like it, of the buffer to bind them to.
    """

    def __init__(self, params: Sequence[Tensor], views: Sequence[Tensor]):
        self.params, self.views = list(params), list(views)
        self._ptrs: list[int] = []
        self.bind()

    @torch.no_grad()
    def bind(self) -> None:
        """Copy every parameter's values into its view and make the view its storage."""
        for param, view in zip(self.params, self.views, strict=True):
            if (param.device, param.dtype) != (view.device, view.dtype):
                raise ValueError(
                    f"a parameter moved to {param.device}/{param.dtype} after its optimizer was built on "
                    f"{view.device}/{view.dtype}; build the optimizer after moving the model"
                )
            if param.data_ptr() != view.data_ptr():
                view.copy_(param.detach())
                param.data = view
        self._ptrs = [p.data_ptr() for p in self.params]

    def ensure(self) -> bool:
        """Bind again any parameter whose storage was replaced; whether one was."""
        if [p.data_ptr() for p in self.params] == self._ptrs:
            return False
        self.bind()
        return True
