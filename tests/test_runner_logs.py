"""The log writer: CSV rows, truncation on resume, TensorBoard purge."""

import csv

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlplast.log_writer import CSV_HEADER, DamagedLog, GroupLog, RunLog, truncate_csv


def rows(path):
    with open(path) as f:
        return [(int(r["step"]), r["tag"], float(r["value"])) for r in csv.DictReader(f)]


def test_group_log_writes_one_csv_per_run(tmp_path):
    log = GroupLog([tmp_path / "a", tmp_path / "b"])
    log.scalars({"losses/x": torch.tensor([1.0, 2.0]), "env/friction": [0.5, 0.25]}, step=10)
    log.runs[1].scalar("charts/episodic_return", 3.5, 12)
    log.close()
    assert rows(tmp_path / "a/metrics.csv") == [(10, "losses/x", 1.0), (10, "env/friction", 0.5)]
    assert rows(tmp_path / "b/metrics.csv") == [
        (10, "losses/x", 2.0),
        (10, "env/friction", 0.25),
        (12, "charts/episodic_return", 3.5),
    ]
    assert (tmp_path / "a/metrics.csv").read_text().startswith(CSV_HEADER)


def test_truncate_drops_later_and_torn_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV_HEADER + "1,a,1.0\n5,a,2.0\n6,a,3.0\n7,a,4")
    truncate_csv(path, 5)
    assert path.read_text() == CSV_HEADER + "1,a,1.0\n5,a,2.0\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CSV_HEADER + "1,a,1.0\ngarbage\n2,a,2.0\n", r"metrics\.csv:3: 'garbage' is not a 'step,tag,value' row"),
        (CSV_HEADER + "1,a,x\n", r"metrics\.csv:2: '1,a,x'"),
        ("step,value\n1,2\n", r"metrics\.csv:1: the header must be"),
    ],
)
def test_a_damaged_line_is_named_on_resume_and_nothing_changes(tmp_path, text, message):
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder, content in ((good, CSV_HEADER + "1,a,1.0\n9,a,2.0\n"), (bad, text)):
        folder.mkdir()
        (folder / "metrics.csv").write_text(content)
    with pytest.raises(DamagedLog, match=message):
        GroupLog([good, bad], resume_step=5)
    assert (bad / "metrics.csv").read_text() == text
    assert (good / "metrics.csv").read_text().endswith("9,a,2.0\n")  # not truncated either
    assert not list(good.glob("events.*"))


def test_a_non_utf8_csv_is_named(tmp_path):
    (tmp_path / "metrics.csv").write_bytes(CSV_HEADER.encode() + b"1,a,\xff\n")
    with pytest.raises(DamagedLog, match="not UTF-8"):
        RunLog(tmp_path, resume_step=1)


def test_resume_keeps_rows_up_to_checkpoint_and_purges_tensorboard(tmp_path):
    log = RunLog(tmp_path)
    for step in (1, 2, 3, 4):
        log.scalar("losses/x", step, step)
    log.close()
    resumed = RunLog(tmp_path, resume_step=2)
    for step in (3, 4, 5):
        resumed.scalar("losses/x", 10 * step, step)
    resumed.close()
    assert rows(tmp_path / "metrics.csv") == [
        (s, "losses/x", v) for s, v in [(1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]
    ]
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("losses/x")] == [(1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]


def test_fresh_start_clears_leftovers_of_a_run_that_never_checkpointed(tmp_path):
    log = RunLog(tmp_path)
    log.scalar("losses/x", 1.0, 1)
    log.close()
    fresh = RunLog(tmp_path)
    fresh.scalar("losses/x", 9.0, 1)
    fresh.close()
    assert rows(tmp_path / "metrics.csv") == [(1, "losses/x", 9.0)]
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
