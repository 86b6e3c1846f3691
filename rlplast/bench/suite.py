"""``rlplast bench``: every throughput measurement in one process and one table.

Sections, each from the existing benchmark of its module (nothing is re-measured differently):

* ``simulation`` (rlplast.bench.simulation): raw ``mujoco.mj_step`` on the same cores (the
  physical limit), the cpu VecEnv and the Gymnasium wrapper, in env-steps/s, interleaved per
  repeat; backend / raw ratios per repeat. On Ant, then the cpu backend and its ratio to raw
  mj_step on each other task (``sim_tasks``; rows named ``..., Hopper-v5``).
* ``warp`` (rlplast.bench.warp): the warp backend's env-steps/s on CUDA; without a CUDA GPU and
  mujoco_warp, one row that says it was not measured.
* ``ppo`` (rlplast.bench.ppo): end-to-end SPS of rlplast's PPO (simulator, acting, updates,
  logging, metrics, checkpoint) with the reference hyperparameters, for one run and for a run
  group, each alternating with SB3's PPO (same network and hyperparameters, same env); ours / SB3
  per repeat, by wall clock and by process CPU time.
* ``plugins`` (rlplast.bench.plugins): one ``PPO.update()`` (10 epochs x 16 minibatches) of CBP and
  AdaUPGD next to plain PPO (``ppo_tuned``: the same Adam betas, no plug-in), interleaved, each
  timed by wall clock (the goal's clock) and in process CPU time; ratio per repeat; what that adds
  to an end-to-end iteration (CPU time); and CBP with the reference's stale Adam state at a reset,
  which shows what the per-weight bias correction of reset weights costs.
* ``metrics`` (rlplast.bench.metrics): the plasticity tracker's cost relative to PPO's network work
  (acting passes and updates, no simulator), thread CPU time; one measurement per repeat.

Every figure is the median over ``repeats`` with min and max; every ratio is taken within a
repeat from figures measured side by side, then summarised. A section that fails is reported as
such and the others still run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from rlplast.atomic import atomic_write_text
from rlplast.bench.metrics import measure_metrics_overhead
from rlplast.bench.plugins import BASELINE, STALE_MOMENTS, ppo_updater, resets_optimizer_state
from rlplast.bench.ppo import measure_ppo_speed
from rlplast.bench.simulation import bench_simulation
from rlplast.envs.cpu_ant import available_cores
from rlplast.envs.tasks import TASKS
from rlplast.envs.vec import ANT_IDS, warp_available

Section = Literal["simulation", "warp", "ppo", "plugins", "metrics"]
SECTIONS: tuple[Section, ...] = ("simulation", "warp", "ppo", "plugins", "metrics")
SIM_NAMES = {"raw_mj_step": "raw mj_step", "cpu_vecenv": "cpu backend", "gym_wrapper": "Gymnasium wrapper"}
RAW = "raw mj_step"
BACKEND_SHARE = "cpu backend / raw mj_step"
GOAL_BACKEND_SHARE = 0.85  # cpu backend / raw mj_step
GOAL_PPO_SPEEDUP = 1.5  # rlplast PPO / SB3 PPO on the CPU
GOAL_PLUGIN_RATIO = 1.15  # a CBP or UPGD update / a plain Adam PPO update (at most)
UPDATES_PER_REPEAT = 3  # PPO updates per method in one repeat of the plug-in section
GOAL_METRICS_PCT = 5.0  # the metrics' cost, % of PPO's network work (at most)
METRICS_SHARE = "metrics / PPO network work"
BUSY_LOAD = 0.5  # 1-min load average per available core above which the table carries a warning


class SuiteSettings(BaseModel):
    """Sizes of every section (the ``--quick`` and full presets are :data:`QUICK` and :data:`FULL`)."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "custom"
    sections: tuple[Section, ...] = SECTIONS
    repeats: PositiveInt = Field(5, description="timed repeats of every figure")
    threads: PositiveInt | None = Field(None, description="simulator and torch threads; None: every core / torch's")
    task: str = "slippery_ant"
    method: str = "ppo"
    sim_envs: PositiveInt = 64
    sim_steps: PositiveInt = Field(300, description="env steps per env per repeat")
    sim_tasks: tuple[str, ...] = Field(tuple(TASKS), description="env ids whose cpu backend / raw ratio is measured")
    warp_worlds: PositiveInt = 4096
    warp_steps: PositiveInt = 200
    ppo_steps: PositiveInt = Field(3 * 2048, description="env steps per run per repeat (whole updates)")
    group: PositiveInt = Field(4, description="runs of the run-group measurement")
    plugin_methods: tuple[str, ...] = ("ppo_cbp", "ppo_upgd_protocol")
    ppo_overrides: tuple[str, ...] = Field((), description="config overrides of the PPO section (tests)")


QUICK = SuiteSettings(preset="quick", repeats=3, sim_envs=16, sim_steps=100, warp_worlds=1024, ppo_steps=2048)
FULL = SuiteSettings(preset="full")


@dataclass
class Figure:
    """One row of the table: a quantity's median, min and max over its repeats.

    Attributes:
        section: which benchmark measured it.
        name: what it is.
        unit: ``env-steps/s``, ``ratio``, ``ms``, ``%`` ...
        median, min, max: over ``n`` repeats (None when not measured).
        n: repeats (0: not measured).
        note: how it was measured, or why not.
    """

    section: str
    name: str
    unit: str
    median: float | None
    min: float | None
    max: float | None
    n: int
    note: str = ""

    @classmethod
    def of(cls, section: str, name: str, unit: str, values: Sequence[float], note: str = "") -> Figure:
        values = [float(v) for v in values]
        if not values:
            raise ValueError(f"figure {name!r} has no values")
        return cls(section, name, unit, statistics.median(values), min(values), max(values), len(values), note)

    @classmethod
    def missing(cls, section: str, name: str, note: str) -> Figure:
        return cls(section, name, "", None, None, None, 0, note)


@dataclass
class Goal:
    """A target the README states, checked against a figure of this run.

    ``met`` judges the median; ``verdict`` also looks at the spread: ``yes`` (every repeat meets
    the target: for a lower bound even the minimum reaches it, for an upper bound even the maximum
    stays under it), ``no`` (no repeat does), ``unclear`` (the repeats fall on both sides: a busy
    machine, or too few repeats), or ``not measured`` (not asked for, or its section failed).
    """

    name: str
    target: float
    figure: str
    median: float | None
    met: bool | None
    verdict: str
    note: str = ""


def judge(figure: Figure | None, target: float, at_most: bool = False) -> tuple[bool | None, str]:
    """``(median >= target, verdict)`` of a figure (``at_most``: ``median <= target``; see :class:`Goal`)."""
    if figure is None or figure.median is None:
        return None, "not measured"
    sign = -1 if at_most else 1  # an upper bound is a lower bound on the negated figure
    low, high = sorted((sign * figure.min, sign * figure.max))
    if low >= sign * target:
        return True, "yes"
    if high < sign * target:
        return False, "no"
    return sign * figure.median >= sign * target, "unclear"


@dataclass
class SuiteResult:
    settings: dict[str, Any]
    machine: dict[str, Any]
    figures: list[Figure] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    seconds: float = 0.0
    command: str = "rlplast bench"

    def figure(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


def ratios(top: Sequence[float], bottom: Sequence[float]) -> list[float]:
    """Per-repeat ratios ``top[i] / bottom[i]`` (figures of the same repeat)."""
    if len(top) != len(bottom):
        raise ValueError(f"ratios need paired repeats, got {len(top)} and {len(bottom)} values")
    return [a / b for a, b in zip(top, bottom, strict=True)]


# -- sections -------------------------------------------------------------------------------------


def simulation_figures(s: SuiteSettings) -> list[Figure]:
    """Raw mj_step, cpu VecEnv, Gymnasium wrapper and their ratios on Ant (bench_simulation's
    rows), then the cpu backend and its ratios to raw mj_step on each other task of ``sim_tasks``."""
    sizes = {"num_envs": s.sim_envs, "steps": s.sim_steps, "threads": s.threads, "repeats": s.repeats}
    out = _simulation_rows(bench_simulation(**sizes), s.repeats, "")
    for env_id in s.sim_tasks:
        if env_id not in ANT_IDS:
            rows = bench_simulation(**sizes, env_id=env_id, gym_wrapper=False)
            out += _simulation_rows([r for r in rows if r["name"].startswith("cpu_vecenv")], s.repeats, f", {env_id}")
    return out


def _simulation_rows(rows: list[dict[str, Any]], repeats: int, suffix: str) -> list[Figure]:
    """Figures of bench_simulation's rows, named readably (``suffix``: the task of all but Ant)."""
    first = rows[0]
    note = f"{first['num_envs']} envs x {first['steps']} steps, {first['threads']} threads"
    out = []
    for row in rows:
        label = row["name"].replace("/", " / ")
        for key, readable in SIM_NAMES.items():
            label = label.replace(key, readable)
        label = label.replace(" (cpu time)", f"{suffix} (cpu time)") if "(cpu time)" in label else label + suffix
        out.append(Figure("simulation", label, row["unit"], row["median"], row["min"], row["max"], repeats, note))
    return out


def warp_figures(s: SuiteSettings, raw: Figure | None) -> list[Figure]:
    """The warp backend on CUDA, one world count; a 'not measured' row elsewhere."""
    if not warp_available():
        return [Figure.missing("warp", "warp backend", "not measured: needs a CUDA GPU with mujoco_warp")]
    from rlplast.bench.warp import measure

    runs = [measure(s.warp_worlds, s.warp_steps, repeats=1, device="cuda") for _ in range(s.repeats)]
    note = f"{s.warp_worlds} worlds x {s.warp_steps} steps, {torch.cuda.get_device_name()}"
    out = [
        Figure.of("warp", "warp backend (sim)", "env-steps/s", [r["sim"] for r in runs], note),
        Figure.of("warp", "warp backend (VecEnv step)", "env-steps/s", [r["vecenv"] for r in runs], note),
    ]
    if raw is not None and raw.median:
        out.append(
            Figure.of(
                "warp",
                f"warp backend (VecEnv step) / {RAW}",
                "ratio",
                [r["vecenv"] / raw.median for r in runs],
                "GPU against the CPU raw median of this run",
            )
        )
    return out


def _ppo_rows(result: dict[str, Any], label: str, runs: int) -> list[Figure]:
    steps = result["steps"]
    note = f"{steps} env steps per run per repeat, {result['threads']} torch threads"
    return [
        Figure.of("ppo", f"rlplast PPO, {label}", "env-steps/s", result["rlplast_sps"], note + f", {runs} run(s)"),
        Figure.of(
            "ppo", f"rlplast PPO, {label} (cpu time)", "env-steps/cpu-s", result["rlplast_cpu_sps"], "process CPU time"
        ),
        Figure.of("ppo", f"SB3 PPO (alternating with {label})", "env-steps/s", result["sb3_sps"], note + ", 1 run"),
        Figure.of("ppo", f"rlplast / SB3, {label}", "ratio", result["ratio"], "wall clock, per repeat"),
        Figure.of("ppo", f"rlplast / SB3, {label} (cpu time)", "ratio", result["cpu_ratio"], "process CPU time"),
    ]


def ppo_figures(s: SuiteSettings) -> list[Figure]:
    """rlplast's PPO against SB3's, for one run and for a group of ``s.group`` (each measurement
    starts with an untimed tiny run of both)."""
    out = []
    for runs, label in ((1, "R = 1"), (s.group, f"group of {s.group}")):
        result = measure_ppo_speed(
            s.task, s.method, s.ppo_steps, s.repeats, s.threads, group=runs, overrides=s.ppo_overrides
        )
        out += _ppo_rows(result, label, runs)
    return out


def interleave(timers: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[Any]]:
    """Each timer once per repeat, in turns (load from elsewhere hits all alike): what each call
    returned (seconds)."""
    seconds: dict[str, list[Any]] = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timer in timers.items():
            seconds[name].append(timer())
    return seconds


def plugin_figures(s: SuiteSettings, ppo_sps: Figure | None) -> list[Figure]:
    """Per-update time of each plug-in method next to plain PPO, and the end-to-end share
    (``ppo_sps``: rlplast's end-to-end env steps per CPU second, the clock of that share)."""
    names = [BASELINE, *[m for m in s.plugin_methods if m != BASELINE]]
    names += [m + STALE_MOMENTS for m in names if resets_optimizer_state(m)]
    updaters = {name: ppo_updater(name, 1, torch.device("cpu")) for name in names}
    for update in updaters.values():
        update()  # warm-up
    # a repeat averages UPDATES_PER_REPEAT updates of each method, taken in turns (one update is a
    # quarter of a second: a burst of load elsewhere would swing single-update ratios by 30%)
    times = interleave(updaters, s.repeats * UPDATES_PER_REPEAT)

    def per_repeat(clock: str) -> dict[str, list[float]]:
        return {
            name: [
                sum(getattr(t, clock) for t in values[i : i + UPDATES_PER_REPEAT]) / UPDATES_PER_REPEAT
                for i in range(0, len(values), UPDATES_PER_REPEAT)
            ]
            for name, values in times.items()
        }

    wall, cpu = per_repeat("wall"), per_repeat("cpu")
    note = f"one PPO.update() (10 x 16 minibatches), R = 1, wall clock, mean of {UPDATES_PER_REPEAT} per repeat"
    out = [Figure.of("plugins", f"{BASELINE} update", "ms", [v * 1e3 for v in wall[BASELINE]], note)]
    for name in names[1:]:
        steady = "; CBP at its steady state (all units mature)" if name.startswith("ppo_cbp") else ""
        out += [
            Figure.of("plugins", f"{name} update", "ms", [v * 1e3 for v in wall[name]], note),
            Figure.of(
                "plugins",
                f"{name} / {BASELINE} (update)",
                "ratio",
                ratios(wall[name], wall[BASELINE]),
                "wall clock, per repeat" + steady,
            ),
            Figure.of(
                "plugins",
                f"{name} / {BASELINE} (update, cpu time)",
                "ratio",
                ratios(cpu[name], cpu[BASELINE]),
                "process CPU time, per repeat (counts the idle OpenMP worker spinning through serial ops)",
            ),
        ]
        if ppo_sps is not None and ppo_sps.median and not name.endswith(STALE_MOMENTS):
            iteration = 2048 / ppo_sps.median  # CPU seconds of one end-to-end iteration of 2048 steps
            extra = [(a - b) / iteration * 100 for a, b in zip(cpu[name], cpu[BASELINE], strict=True)]
            out.append(
                Figure.of(
                    "plugins",
                    f"{name}: added to an end-to-end iteration",
                    "%",
                    extra,
                    "extra update CPU time over the CPU time of the median rlplast PPO iteration (R = 1)",
                )
            )
    return out


def metrics_figures(s: SuiteSettings) -> list[Figure]:
    """The tracker's cost per 1000 env steps relative to PPO's network work, R = 1."""
    rows = [measure_metrics_overhead(num_runs=(1,), repeats=1, cpu_time=True)[0] for _ in range(s.repeats)]
    note = "thread CPU time, 1 thread; PPO's acting passes and updates without the simulator"
    return [
        Figure.of("metrics", METRICS_SHARE, "%", [r["overhead_pct"] for r in rows], note),
        Figure.of("metrics", "metrics per 1000 env steps", "ms", [r["metrics_ms_per_1000"] for r in rows], note),
    ]


# -- the suite ------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, cores, GPU and library versions of this machine."""
    import mujoco
    import stable_baselines3

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores_available": available_cores(),
        "cores_total": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "platform": platform.platform(),
        "load_average_before": _load(),
    }


def _load() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def check_goals(result: SuiteResult) -> list[Goal]:
    """The README's goals against this run's medians (None: the figure was not measured)."""
    goals = []
    specs = [
        ("cpu backend >= 0.85 x raw mj_step", GOAL_BACKEND_SHARE, BACKEND_SHARE, "wall clock"),
        ("rlplast PPO >= 1.5 x SB3 PPO, one run", GOAL_PPO_SPEEDUP, "rlplast / SB3, R = 1", ""),
    ]
    group = next((f.name for f in result.figures if f.name.startswith("rlplast / SB3, group")), None)
    if group is not None and not group.endswith("(cpu time)"):
        specs.append(("rlplast PPO >= 1.5 x SB3 PPO, run group", GOAL_PPO_SPEEDUP, group, "all runs' steps"))
    upper = [  # (name, target, figure, the section that measures it)
        (f"{m} update <= {GOAL_PLUGIN_RATIO} x {BASELINE}", GOAL_PLUGIN_RATIO, f"{m} / {BASELINE} (update)", "plugins")
        for m in ("ppo_cbp", "ppo_upgd_protocol")
    ]
    upper.append(
        (f"metrics <= {GOAL_METRICS_PCT:g}% of the PPO network work", GOAL_METRICS_PCT, METRICS_SHARE, "metrics")
    )
    asked = set(result.settings.get("sections") or ())
    checks = [(*spec, False) for spec in specs]
    checks += [(name, target, figure, "", True) for name, target, figure, section in upper if section in asked]
    for name, target, figure_name, note, at_most in checks:
        figure = result.figure(figure_name)
        met, verdict = judge(figure, target, at_most)
        goals.append(Goal(name, target, figure_name, figure.median if figure else None, met, verdict, note))
    return goals


def run_suite(
    settings: SuiteSettings, log: Callable[[str], None] = lambda _: None, command: str = "rlplast bench"
) -> SuiteResult:
    """Measure every section of ``settings`` in this process and check the goals.

    Args:
        settings: sizes and sections.
        log: receives a line as each section starts (e.g. ``click.echo`` to stderr).
        command: the command line, recorded with the results.
    """
    start = time.perf_counter()
    result = SuiteResult(settings=settings.model_dump(mode="json"), machine=machine_info(), command=command)
    runners: dict[str, Callable[[], list[Figure]]] = {
        "simulation": lambda: simulation_figures(settings),
        "warp": lambda: warp_figures(settings, result.figure(RAW)),
        "ppo": lambda: ppo_figures(settings),
        "plugins": lambda: plugin_figures(settings, result.figure("rlplast PPO, R = 1 (cpu time)")),
        "metrics": lambda: metrics_figures(settings),
    }
    for section in SECTIONS:
        if section not in settings.sections:
            continue
        log(f"measuring {section} ...")
        try:
            result.figures += runners[section]()
        except Exception as err:  # one broken section must not lose the others' numbers
            result.figures.append(Figure.missing(section, section, f"failed: {type(err).__name__}: {err}"))
    result.goals = check_goals(result)
    result.machine["load_average_after"] = _load()
    result.seconds = time.perf_counter() - start
    return result


# -- output ---------------------------------------------------------------------------------------

FORMATS = {"env-steps/s": "{:,.0f}", "ratio": "{:.3f}", "ms": "{:.1f}", "%": "{:.1f}"}


def _cell(value: float | None, unit: str) -> str:
    return "-" if value is None else FORMATS.get(unit, "{:.4g}").format(value)


def _busy_warning(machine: dict[str, Any]) -> list[str]:
    """A warning line when other processes already loaded the machine before the run."""
    load = machine.get("load_average_before")
    if not load or load[0] <= BUSY_LOAD * machine["cores_available"]:
        return []
    return [
        "",
        f"**Warning: the machine was busy** (1-min load {load[0]} on {machine['cores_available']} cores before "
        "the run): torch and the simulator threads then wait on each other, and these figures are unreliable.",
    ]


def to_markdown(result: SuiteResult) -> str:
    """The table, the goals and the machine, as markdown."""
    m = result.machine
    gpu = m["gpu"] or "none"
    lines = [
        f"Machine: {m['cpu']}, {m['cores_available']} of {m['cores_total']} cores available; GPU: {gpu}; "
        f"Python {m['python']}, torch {m['torch']}, MuJoCo {m['mujoco']}, stable-baselines3 "
        f"{m['stable_baselines3']}; load average (1, 5, 15 min) before {m['load_average_before']}, after "
        f"{m.get('load_average_after')}.",
        *_busy_warning(m),
        "",
        f"`{result.command}` ({result.seconds:.0f} s). Each figure: median over n repeats, with min and max; each "
        "ratio is taken within a repeat between figures measured side by side.",
        "",
        "| section | figure | unit | median | min | max | n | how |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for f in result.figures:
        cells = [_cell(v, f.unit) for v in (f.median, f.min, f.max)]
        lines.append(f"| {f.section} | {f.name} | {f.unit} | {' | '.join(cells)} | {f.n} | {f.note} |")
    lines += ["", "| goal | median | min | max | met |", "|---|---:|---:|---:|---|"]
    for g in result.goals:
        f = result.figure(g.figure)
        low, high = (f.min, f.max) if f is not None else (None, None)
        cells = " | ".join(_cell(v, "ratio") for v in (g.median, low, high))
        lines.append(f"| {g.name} | {cells} | {g.verdict} |")
    return "\n".join(lines) + "\n"


def write_outputs(result: SuiteResult, path: Path) -> list[Path]:
    """JSON and markdown next to each other: ``path`` with suffixes ``.json`` and ``.md``.

    Returns:
        The two paths written.
    """
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".json", ".md") else path
    json_path, md_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".md")
    atomic_write_text(json_path, result.to_json())
    atomic_write_text(md_path, to_markdown(result))
    return [json_path, md_path]
