"""metrics.csv reading: numpy's reader and the row-by-row one agree, and the cache beside the CSV
gives the same Series, follows the CSV when it changes and never gets in the way."""

from __future__ import annotations

import numpy as np
import pytest

from rlplast import atomic
from rlplast.report import metrics_cache, metrics_csv
from rlplast.report.aggregate import Series, load_results, read_metrics
from rlplast.report.metrics_cache import cache_path

R = "charts/episodic_return"
TAGS = ("losses/value_loss", "plasticity/actor/dormant_fraction", "env/friction")


def log_run(run_dir, first: int, last: int, resume_step: int | None = None, seed: int = 0) -> None:
    """Log with the project's writer: every tag of ``TAGS`` every 8 steps and episode returns at
    irregular steps, over ``first..last``, resuming from ``resume_step`` if given."""
    from rlplast.log_writer import RunLog

    rng = np.random.default_rng(seed)
    log = RunLog(run_dir, resume_step)
    for step in range(first, last + 1):
        if rng.random() < 0.3:
            log.scalar(R, rng.normal(1000, 300), step)
        if step % 8 == 0:
            for tag in TAGS:
                log.scalar(tag, rng.normal() * 10.0 ** rng.integers(-8, 8), step)
    log.close()


def parsed(path, tags=None) -> dict[str, Series]:
    """``read_metrics`` without the cache: parse the CSV as it is now."""
    cache_path(path).unlink(missing_ok=True)
    got = read_metrics(path, tags)
    cache_path(path).unlink(missing_ok=True)
    return got


def assert_same(got: dict[str, Series], want: dict[str, Series]) -> None:
    """The same tags in the same order, and bit-identical steps and values of the same dtypes."""
    assert list(got) == list(want)
    for tag in want:
        for a, b in ((got[tag].steps, want[tag].steps), (got[tag].values, want[tag].values)):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), tag


def row_by_row(path, tags=None) -> dict[str, Series]:
    """``read_metrics`` through the Python row reader only."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(metrics_csv, "_parse_columns", lambda fh: None)
        return parsed(path, tags)


def test_cache_gives_the_same_series_as_parsing(tmp_path, monkeypatch):
    log_run(tmp_path, 1, 400)
    csv = tmp_path / "metrics.csv"
    first = read_metrics(csv)  # parses and writes the cache
    assert cache_path(csv).is_file()
    assert set(first) == {R, *TAGS}
    monkeypatch.setattr(metrics_csv, "_parse_columns", lambda fh: pytest.fail("the CSV was parsed again"))
    assert_same(read_metrics(csv), first)
    monkeypatch.undo()
    assert_same(first, row_by_row(csv))


def test_cache_is_ignored_and_rewritten_when_a_resumed_run_appends(tmp_path):
    log_run(tmp_path, 1, 200)
    csv = tmp_path / "metrics.csv"
    before = read_metrics(csv)
    log_run(tmp_path, 121, 300, resume_step=120, seed=1)  # drops the rows after 120, then appends
    after = read_metrics(csv)
    assert after[R].steps[-1] > before[R].steps[-1]
    assert_same(after, row_by_row(csv))
    assert_same(read_metrics(csv), after)  # from the rewritten cache


def test_cache_holds_every_tag_and_filters_on_read(tmp_path):
    log_run(tmp_path, 1, 100)
    csv = tmp_path / "metrics.csv"
    assert list(read_metrics(csv, tags={R})) == [R]  # writes the cache of all tags
    assert_same(read_metrics(csv, tags={TAGS[1], R}), parsed(csv, tags={TAGS[1], R}))
    assert_same(read_metrics(csv), parsed(csv))
    assert read_metrics(csv, tags={"not/logged"}) == {}


@pytest.mark.parametrize("content", [b"", b"not a zip file", b"PK\x03\x04 torn"])
def test_unreadable_cache_is_ignored_and_replaced(tmp_path, content):
    log_run(tmp_path, 1, 50)
    csv = tmp_path / "metrics.csv"
    want = parsed(csv)
    cache_path(csv).write_bytes(content)
    assert_same(read_metrics(csv), want)
    assert metrics_cache.load_cache(csv) is not None  # a valid cache again


def test_cache_of_another_csv_is_ignored(tmp_path):
    log_run(tmp_path / "a", 1, 50)
    log_run(tmp_path / "b", 1, 60, seed=1)
    a, b = tmp_path / "a" / "metrics.csv", tmp_path / "b" / "metrics.csv"
    read_metrics(a)
    cache_path(a).replace(cache_path(b))
    assert_same(read_metrics(b), row_by_row(b))


def test_unwritable_folder_goes_without_cache(tmp_path, monkeypatch):
    log_run(tmp_path, 1, 50)
    csv = tmp_path / "metrics.csv"

    def refuse(*args, **kwargs):
        raise PermissionError("read-only")

    monkeypatch.setattr(metrics_cache.os, "replace", refuse)
    assert_same(read_metrics(csv), row_by_row(csv))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("events.")) == ["metrics.csv"]
    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    assert_same(read_metrics(csv), row_by_row(csv))


def test_numpy_reader_matches_row_reader_across_chunks(tmp_path, monkeypatch, make_run):
    # A resumed run that was not truncated, blank lines and several chunks of rows.
    rows = [(s, t, s * 0.5 + i) for s in range(0, 60, 4) for i, t in enumerate(("a", "b"))]
    rows += [(20, "a", -1.0), (24, "a", -2.0), (8, "b", 1e-300), (60, "b", float("nan"))]
    csv = make_run(tmp_path, rows) / "metrics.csv"
    csv.write_text(csv.read_text().replace("\n4,", "\n\n4,"))
    monkeypatch.setattr(metrics_csv, "_CHUNK_CHARS", 40)
    got = read_metrics(csv)
    assert cache_path(csv).is_file()  # read by numpy's reader, several rows at a time
    np.testing.assert_array_equal(got["a"].steps, [*range(0, 20, 4), 20, 24])
    assert_same(got, row_by_row(csv))


def test_files_only_the_row_reader_accepts_are_read_without_cache(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("step,tag,value\n1,a,1_000\n  \n2,a,2\n")
    got = read_metrics(csv)
    np.testing.assert_array_equal(got["a"].values, [1000.0, 2.0])
    assert not cache_path(csv).exists()


def test_results_folder_reads_the_same_with_caches(tmp_path, make_meta):
    for method in ("ppo", "cbp"):
        for seed in (0, 1):
            log_run(tmp_path / method / f"seed{seed}", 1, 80, seed=seed)
    make_meta(tmp_path, name="exp", methods=["ppo", "cbp"], steps=80)
    first, second = load_results(tmp_path), load_results(tmp_path)  # the second from the caches
    assert cache_path(tmp_path / "ppo" / "seed0" / "metrics.csv").is_file()
    assert first.methods == second.methods == ["ppo", "cbp"]
    for a, b in zip(first.all_runs(), second.all_runs(), strict=True):
        assert (a.method, a.seed) == (b.method, b.seed)
        assert_same(b.scalars, a.scalars)
