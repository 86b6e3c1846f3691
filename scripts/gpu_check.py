"""Helpers of scripts/gpu_check.sh and scripts/gpu_wheels.sh (standard library only, but for
``checkpoint-step``, which reads a checkpoint with torch).

Subcommands:

* ``requirements``: the pinned packages of the check, one ``name==version`` a line, read from
  constraints.txt: every tested version but those the GPU machine brings (torch and its CUDA
  libraries) or the check does not use (see ``EXCLUDED``).
* ``checkpoint-step FOLDER``: the step of the run-group checkpoint in ``FOLDER/checkpoints``.
* ``train ...``: the training part's numbers from the runs' metrics.csv and the two parts' logs
  (SPS, final returns, whether the resume continued from the checkpoint), as JSON.
* ``summary OUT``: ``OUT/summary.md`` from the steps' records, the benchmark table and the
  training numbers; exits 1 unless every step passed.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Not installed by the check: the machine's own CUDA build of torch and what comes with it, and
# what the check never imports (the cluster launcher, the linter, the ffmpeg binary of videos:
# 65 MB).
EXCLUDED = ("torch", "triton", "ray", "ruff", "imageio-ffmpeg")
EXCLUDED_PREFIXES = ("nvidia-",)
BENCH_GOAL = (4096, 1_000_000)  # env steps/s of the simulator at 4096 worlds on an H100
RUN_GOAL = (50_000_000, 15 * 60)  # a 50M-step PPO+CBP run in 15 minutes
TAIL_LINES = 15


def pinned_requirements(constraints: Path = REPO / "constraints.txt") -> list[str]:
    """The ``name==version`` lines of ``constraints`` that the check installs (see the module doc)."""
    out = []
    for line in constraints.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name = re.split(r"[=<>!~ \[]", line, maxsplit=1)[0].lower().replace("_", "-")
        if name in EXCLUDED or name.startswith(EXCLUDED_PREFIXES):
            continue
        if "==" not in line:
            raise ValueError(f"{constraints}: {line!r} is not pinned (name==version)")
        out.append(line)
    return out


def checkpoint_step(folder: Path) -> int | None:
    """The ``run_step`` of the (one) run-group checkpoint under ``folder/checkpoints``, or None."""
    paths = sorted((folder / "checkpoints").glob("seeds_*.pt"))
    if not paths:
        return None
    import torch

    return int(torch.load(paths[0], map_location="cpu", weights_only=True)["run_step"])


# ---- the training part ---------------------------------------------------------------------------


def read_rows(metrics_csv: Path, tags: tuple[str, ...]) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of a run's metrics.csv, for ``tags`` only, in file order."""
    rows: dict[str, list[tuple[int, float]]] = {tag: [] for tag in tags}
    with metrics_csv.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["tag"] in rows:
                rows[row["tag"]].append((int(row["step"]), float(row["value"])))
    return rows


def _steady_median(values: list[float]) -> float | None:
    """The median of a part's per-update values without its first update (start-up: kernel
    compiles, graph capture), unless that is all there is."""
    values = values[1:] if len(values) > 1 else values
    return statistics.median(values) if values else None


def _first(pattern: str, text: str) -> int | None:
    match = re.search(pattern, text)
    return int(match.group(1)) if match else None


def train_report(
    runs: Path, logs: tuple[str, str], rcs: tuple[int, int], walls: tuple[float, float], ckpt_step: int | None
) -> dict:
    """The numbers of the training part: ``runs`` is ``<out>/<method>`` (``seed<k>/metrics.csv``),
    ``logs``, ``rcs`` and ``walls`` are the output, exit code and seconds of the run that was sent
    SIGTERM and of its resume, ``ckpt_step`` the checkpoint's step between the two."""
    stopped_at = _first(r"stopped at step (\d+) of", logs[0])
    resumed_at = _first(r"resuming .* from step (\d+)", logs[1])
    seeds, group_sps = {}, [defaultdict(float), defaultdict(float)]
    for path in sorted(runs.glob("seed*/metrics.csv"), key=lambda p: int(p.parent.name[4:])):
        rows = read_rows(path, ("charts/sps", "charts/episodic_return"))
        sps, returns = rows["charts/sps"], rows["charts/episodic_return"]
        steps = [s for s, _ in sps]
        reached = max(steps, default=0)
        for step, value in sps:  # the runs of a group share each update: their rates add up
            group_sps[0 if ckpt_step is not None and step <= ckpt_step else 1][step] += value
        last = [r for s, r in returns if s > 0.9 * reached]
        seeds[path.parent.name] = {
            "steps": reached,
            "updates": len(steps),
            "unique_update_steps": len(steps) == len(set(steps)),
            "sps_median": _steady_median([v for _, v in sps]),
            "final_return": statistics.mean(last) if last else (returns[-1][1] if returns else None),
            "final_return_episodes": len(last),
            "final_return_is_last_episode": not last and bool(returns),
        }
    parts = [_steady_median([v for _, v in sorted(g.items())]) for g in group_sps]
    steps_per_part = [len(g) for g in group_sps]
    sps_run = _steady_median([s["sps_median"] for s in seeds.values() if s["sps_median"]] or [])
    resumed = (
        rcs[0] == 143
        and stopped_at is not None
        and stopped_at == ckpt_step == resumed_at
        and all(s["unique_update_steps"] and s["steps"] > ckpt_step for s in seeds.values())
    )
    return {
        "runs": len(seeds),
        "seeds": seeds,
        "part_exit_codes": list(rcs),
        "part_seconds": [round(w, 1) for w in walls],
        "part_updates": steps_per_part,
        "group_sps_median": parts,
        "run_sps_median": sps_run,
        "stopped_at": stopped_at,
        "checkpoint_step": ckpt_step,
        "resumed_at": resumed_at,
        "resumed_from_checkpoint": resumed,
        "finished": rcs[1] == 0 and "done:" in logs[1],
        "stopped_by_time_limit": rcs[1] == 124,
        "seconds_for_50M_per_run": RUN_GOAL[0] / sps_run if sps_run else None,
    }


# ---- the summary ---------------------------------------------------------------------------------


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _num(x: float | None, fmt: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, fmt)


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    if not path.is_file():
        return "(no output)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def bench_rows(text: str) -> dict[int, float]:
    """``{worlds: sim env steps/s}`` from the table of ``python -m rlplast.bench.warp``."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit():
            rows[int(parts[0])] = float(parts[1].replace(",", ""))
    return rows


def train_lines(t: dict) -> list[str]:
    """The training section of the summary."""
    lines = [
        "| seed | steps | SPS per run (median) | final return | episodes in the last 10% |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in t["seeds"].items():
        ret = _num(s["final_return"], ".1f") + (" (last episode)" if s["final_return_is_last_episode"] else "")
        lines.append(f"| {name} | {s['steps']:,} | {_num(s['sps_median'])} | {ret} | {s['final_return_episodes']} |")
    sps = t["group_sps_median"]
    resumed = "yes" if t["resumed_from_checkpoint"] else "no"
    lines += [
        "",
        f"- part 1 (SIGTERM): {t['part_seconds'][0]} s, exit {t['part_exit_codes'][0]}, "
        f"{t['part_updates'][0]} updates, group SPS {_num(sps[0])} (median per update, the first of a run left out "
        "when it has more: start-up)",
        f"- part 2 (resume): {t['part_seconds'][1]} s, exit {t['part_exit_codes'][1]}, "
        f"{t['part_updates'][1]} updates, group SPS {_num(sps[1])}",
        f"- stopped at step {t['stopped_at']}, checkpoint at step {t['checkpoint_step']}, resumed from step "
        f"{t['resumed_at']}: resume continued from the checkpoint: **{resumed}**",
        f"- finished every step asked for: {'yes' if t['finished'] else 'no'}"
        + (" (stopped by the time limit, after saving)" if t["stopped_by_time_limit"] else ""),
        f"- 50M steps per run at {_num(t['run_sps_median'])} SPS per run, {t['runs']} runs side by side: "
        f"{_hms(t['seconds_for_50M_per_run'])} (goal: 15 min)",
    ]
    return lines


def write_summary(out: Path) -> bool:
    """Write ``out/summary.md`` from ``out/steps.tsv`` (name, seconds, exit code, log, note a
    line), ``out/bench.txt`` and ``out/train.json``; True if every step passed."""
    steps = [line.split("\t") for line in (out / "steps.tsv").read_text(encoding="utf-8").splitlines() if line]
    env = out / "environment.txt"
    lines = ["# GPU check of the warp backend", ""]
    if env.is_file():
        lines += ["```", env.read_text(encoding="utf-8").strip(), "```", ""]
    lines += ["| step | seconds | result | note |", "|---|---:|---|---|"]
    for name, seconds, rc, _log, note in steps:
        result = "pass" if rc == "0" else ("timeout" if rc == "124" else f"FAIL (exit {rc})")
        lines.append(f"| {name} | {seconds} | {result} | {note} |")
    total = sum(float(s[1]) for s in steps)
    lines += ["", f"Total: {total:.0f} s.", ""]
    for name, _seconds, rc, log, _note in steps:
        if rc != "0":
            lines += [f"## {name}: the end of its output ({log})", "", "```", _tail(out / log), "```", ""]
    bench = out / "bench.txt"
    if bench.is_file():
        text = bench.read_text(encoding="utf-8")
        # the table's title, then its lines (indented); not the messages between them
        table = [line for line in text.splitlines() if line.startswith(("warp backend", " "))] or ["(no table)"]
        worlds, goal = BENCH_GOAL
        sim = bench_rows(text).get(worlds)
        verdict = "not measured" if sim is None else ("met" if sim >= goal else "not met")
        lines += ["## Simulation throughput", "", "```", *table, "```", ""]
        lines += [f"Goal >= {goal:,} env steps/s at {worlds} worlds on an H100: {verdict}.", ""]
    train = out / "train.json"
    if train.is_file():
        t = json.loads(train.read_text(encoding="utf-8"))
        lines += ["## Training", "", *train_lines(t), ""]
    (out / "summary.md").write_text("\n".join(lines), encoding="utf-8")
    return all(rc == "0" for _, _, rc, _, _ in steps)


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module doc)."""
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("requirements")
    sub.add_parser("checkpoint-step").add_argument("folder", type=Path)
    train = sub.add_parser("train")
    train.add_argument("--runs", type=Path, required=True, help="the method's folder: <out>/<method>")
    train.add_argument("--logs", type=Path, nargs=2, required=True)
    train.add_argument("--rcs", type=int, nargs=2, required=True)
    train.add_argument("--walls", type=float, nargs=2, required=True)
    train.add_argument("--checkpoint-step", type=int, default=None)
    train.add_argument("--json", type=Path, required=True)
    sub.add_parser("summary").add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "requirements":
        print("\n".join(pinned_requirements()))
    elif args.command == "checkpoint-step":
        step = checkpoint_step(args.folder)
        print("" if step is None else step)
    elif args.command == "train":
        logs = tuple(p.read_text(encoding="utf-8", errors="replace") if p.is_file() else "" for p in args.logs)
        report = train_report(args.runs, logs, tuple(args.rcs), tuple(args.walls), args.checkpoint_step)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print("\n".join(train_lines(report)))
        return 0 if report["resumed_from_checkpoint"] and (report["finished"] or report["stopped_by_time_limit"]) else 1
    else:
        return 0 if write_summary(args.out) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
