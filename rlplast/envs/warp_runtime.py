"""Warp's side of the GPU backend: importing it with a useful error, choosing the device, and
running one env step as a captured graph (CUDA graph on a GPU, Warp's replay on the CPU).

Nothing here knows about Ant; ``warp_ant`` uses it.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import torch

INSTALL_HINT = "pip install 'rlplast[gpu]'"


def import_warp() -> tuple[ModuleType, ModuleType]:
    """Import and initialise ``warp`` and ``mujoco_warp``.

    Returns:
        The modules ``(warp, mujoco_warp)``.

    Raises:
        ImportError: either package is missing; the message says what to install.
    """
    try:
        wp = importlib.import_module("warp")
        mjw = importlib.import_module("mujoco_warp")
    except ImportError as err:
        raise ImportError(
            f"the warp backend needs the mujoco-warp and warp-lang packages ({err}); install them with: {INSTALL_HINT}"
        ) from err
    if wp.config.log_level < wp.LOG_WARNING:
        wp.config.log_level = wp.LOG_WARNING  # no line per compiled module
    wp.init()
    return wp, mjw


def warp_available() -> bool:
    """True when warp, mujoco_warp, a CUDA GPU for Warp and a CUDA build of torch are all present."""
    if not torch.cuda.is_available():
        return False
    try:
        wp, _ = import_warp()
    except ImportError:
        return False
    return bool(wp.is_cuda_available())


def resolve_device(device: str | torch.device) -> tuple[torch.device, str]:
    """The torch device and the Warp device name for ``device`` (``cpu``, ``cuda`` or ``cuda:k``).

    Raises:
        ValueError: a device type other than cpu or cuda.
        RuntimeError: a CUDA device was asked for but torch or Warp sees no CUDA GPU.
    """
    dev = torch.device(device)
    if dev.type == "cpu":
        return dev, "cpu"
    if dev.type != "cuda":
        raise ValueError(f"the warp backend runs on 'cpu' (Warp's CPU device) or 'cuda[:k]', got {str(device)!r}")
    wp, _ = import_warp()
    if not torch.cuda.is_available() or not wp.is_cuda_available():
        who = "torch" if not torch.cuda.is_available() else "Warp"
        raise RuntimeError(
            f"device {str(device)!r} asked for, but {who} finds no CUDA GPU: the warp backend needs an NVIDIA GPU "
            f"with its driver, a CUDA build of torch, and {INSTALL_HINT}; or use device 'cpu' (Warp's CPU device, "
            f"slow) or backend 'cpu'"
        )
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    return torch.device("cuda", index), f"cuda:{index}"


class GraphStep:
    """Runs ``body`` (a function issuing Warp launches) once per :meth:`__call__`, captured.

    The first call runs it plainly (Warp compiles and loads its kernels), the second captures it
    into a graph and replays it, later calls only replay: a CUDA graph on a GPU, Warp's C++
    replay on the CPU. Launches are ordered on torch's current stream, so torch code before and
    after sees their effects without a host sync. ``capture=False`` never captures.

    The body must only launch kernels on buffers that live as long as this object (a graph
    replays the same pointers and kernel arguments).
    """

    def __init__(
        self, wp: ModuleType, device: str, torch_device: torch.device, body: Callable[[], None], capture: bool
    ):
        self.wp = wp
        self.device = device
        self.torch_device = torch_device
        self.body = body
        self.capture = capture
        self.graph: Any = None
        self._calls = 0
        self._stream_key: int | None = None
        self._stream: Any = None

    def torch_stream(self) -> Any:
        """Warp's view of torch's current stream (None on the CPU)."""
        if self.torch_device.type != "cuda":
            return None
        stream = torch.cuda.current_stream(self.torch_device)
        if self._stream_key != stream.cuda_stream:  # wrap once per torch stream, not per step
            self._stream_key, self._stream = stream.cuda_stream, self.wp.stream_from_torch(stream)
        return self._stream

    @contextlib.contextmanager
    def on_torch_stream(self) -> Iterator[None]:
        """Issue Warp work inside this block on the device, ordered with torch's stream."""
        stream = self.torch_stream()
        with self.wp.ScopedDevice(self.device):
            if stream is None:
                yield
            else:
                with self.wp.ScopedStream(stream):  # waits (on device) for Warp's own stream
                    yield

    def _capture(self) -> None:
        # captured on Warp's own stream of the device (torch's default stream cannot capture);
        # the graph is then launched on torch's stream
        try:
            with self.wp.ScopedDevice(self.device), self.wp.ScopedCapture(device=self.device) as cap:
                self.body()
            self.graph = cap.graph
        except Exception as err:  # e.g. no CUDA memory pool, which the captured allocations need
            warnings.warn(f"graph capture failed ({err}); stepping with plain launches", RuntimeWarning, stacklevel=3)
            self.capture = False

    def __call__(self) -> None:
        """Run the body once (plainly, or by launching the captured graph)."""
        self._calls += 1
        if self.capture and self.graph is None and self._calls > 1:
            self._capture()
        if self.graph is not None:
            self.wp.capture_launch(self.graph, stream=self.torch_stream())
        else:
            with self.on_torch_stream():
                self.body()

    def release(self) -> None:
        """Drop the graph (it is captured again on the next call but one)."""
        self.graph = None
        self._calls = 0
