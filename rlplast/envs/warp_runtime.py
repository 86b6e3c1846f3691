"""Warp's side of the GPU backends: importing it with a useful error, choosing the device,
running one env step as a captured graph (CUDA graph on a GPU, Warp's replay on the CPU), and
what both warp backends keep on the host: the reset-noise keys, the friction targets of each
run's schedule, and the buffer-overflow check.

Nothing here knows about a task; ``warp_ant`` and ``warp_mujoco`` use it.
"""

from __future__ import annotations

import contextlib
import importlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from rlplast.envs.schedules import ScheduleConfig

INSTALL_HINT = "pip install 'rlplast[gpu]'"
# Spawn-key tag of the device reset-noise keys (distinct from the schedule's stream).
NOISE_STREAM = 0x3A2F
# mujoco_warp overflow flags that mean a buffer was too small, and the setting to raise.
BUFFER_SETTINGS = {"NEFC": "njmax", "NJMAX_NNZ": "njmax", "BROADPHASE": "nconmax", "NARROWPHASE": "nconmax"}


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


def noise_keys(seeds: Sequence[int], envs_per_run: int) -> list[int]:
    """``[R * E]`` int32 keys of the device reset-noise streams, env e of run r from (seeds[r], e)."""
    keys = []
    for seed in seeds:
        for e in range(envs_per_run):
            seq = np.random.SeedSequence(int(seed), spawn_key=(NOISE_STREAM, e))
            keys.append(int(seq.generate_state(1, np.uint32)[0].astype(np.int32)))
    return keys


class ScheduleTargets:
    """Each run's scheduled friction at its step count, kept in ``target [R]`` on the device.

    The host evaluates R schedules per step (``schedule.at``) and copies them to the device only
    when one changed, without waiting for the device.
    """

    def __init__(self, schedule: ScheduleConfig, num_runs: int, device: torch.device):
        self.schedule = schedule
        self.device = device
        self.target = torch.zeros(num_runs, dtype=torch.float32, device=device)
        self._host = np.full(num_runs, np.nan)

    def forget(self) -> None:
        """Upload at the next :meth:`update` whatever the values (after a reset or a load)."""
        self._host[:] = np.nan

    def update(self, seeds: Sequence[int], run_steps: np.ndarray) -> None:
        """Evaluate each run's schedule at ``run_steps [R]``; copy to the device if it changed."""
        targets = np.array([self.schedule.at(s, int(t)) for s, t in zip(seeds, run_steps, strict=True)])
        if not np.array_equal(targets, self._host):
            host = torch.tensor(targets, dtype=torch.float32)
            if self.device.type == "cuda":
                # pinned + non_blocking: no host sync (torch keeps the block until the copy is done)
                host = host.pin_memory()
            self.target.copy_(host, non_blocking=True)
            self._host = targets


def restore_tensors(saved: Iterable[tuple[str, Tensor]], target_of: Callable[[str], Tensor]) -> None:
    """Copy each saved ``(key, tensor)`` into ``target_of(key)`` in place (device buffers that a
    captured graph reads), or raise ValueError naming the first key whose shape differs."""
    for key, value in saved:
        target = target_of(key)
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(f"state {key!r} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        target.copy_(value)


def raise_on_overflow(mjw: ModuleType, flags: np.ndarray, sizes: dict[str, int], env: str, since: int) -> None:
    """Raise a RuntimeError naming the setting to raise if mujoco_warp flagged a buffer overflow.

    Args:
        mjw: the mujoco_warp module. flags: ``[N]`` the data's ``overflow`` bit flags.
        sizes: the env's ``nconmax`` and ``njmax``. env: the env class's name, for the message.
        since: env steps since the previous check (whose results are not to be trusted).
    """
    for name, setting in BUFFER_SETTINGS.items():
        worlds = np.flatnonzero(flags & int(getattr(mjw.OverflowType, name)))
        if worlds.size:
            raise RuntimeError(
                f"mujoco_warp {name} overflow in worlds {worlds[:10].tolist()}: the {setting} buffer "
                f"({sizes[setting]} per world) is too small; raise it, {env}(..., {setting}=...). Results of "
                f"the last {since} step(s) are invalid."
            )


def batched_simulator(
    mjm: Any, nworld: int, wp_device: str, nconmax: int | None, njmax: int | None, check_every: int | None
) -> tuple[Any, Any, dict[str, int]]:
    """mujoco_warp's Model (``geom_friction`` per world) and Data of ``nworld`` worlds of ``mjm``.

    Args:
        mjm: the host model. nworld: N. wp_device: Warp's device name.
        nconmax, njmax: contacts (pooled over worlds) and constraint rows per world; default: the
            model's worst case (rlplast.envs.warp_model.contact_capacity), which cannot overflow.
        check_every: env steps between device checks; default 1 on the CPU, 100 on CUDA.

    Returns:
        ``(model, data, sizes)``, sizes holding the ``nconmax``, ``njmax`` and ``check_every`` used.

    Raises:
        NotImplementedError: mujoco_warp does not support the model (its message says what).
    """
    from rlplast.envs.warp_model import contact_capacity

    wp, mjw = import_warp()
    on_cuda = wp_device.startswith("cuda")
    with wp.ScopedDevice(wp_device):
        model = mjw.put_model(mjm, batch_sizes={"geom_friction": nworld})  # first: says what it cannot do
        worst_con, worst_rows = contact_capacity(mjm)
        sizes = {
            "nconmax": int(nconmax or worst_con),
            "njmax": int(njmax or worst_rows),
            "check_every": int(check_every or (100 if on_cuda else 1)),
        }
        if sizes["check_every"] < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        model.opt.warn_overflow = 0  # no kernel prints: the envs' device check raises instead
        if on_cuda:
            # solver early exit inside the graph needs conditional nodes (CUDA >= 12.4); without
            # them every substep runs all opt.iterations solver iterations (correct, slower)
            model.opt.graph_conditional = bool(wp.is_conditional_graph_supported())
        data = mjw.make_data(mjm, nworld=nworld, nconmax=sizes["nconmax"], njmax=sizes["njmax"])
    return model, data, sizes
