"""benchmarks/bench_vs_nt.py's split of timed calls by page-fault state (planted calls)."""

from tests._examples import ROOT, load_script

bench = load_script(ROOT / "benchmarks" / "bench_vs_nt.py")


def test_calls_are_split_by_whether_they_faulted_fresh_pages():
    times = [0.030, 0.014, 0.025, 0.015, 0.022]
    faults = [9355, 0, 8192, 3, 9320]
    out = bench._by_state(times, faults)
    assert out == {
        "clean_calls": 2,
        "clean_best": 0.014,
        "faulting_calls": 3,
        "faulting_best": 0.022,
    }
    # one call just under, one at the threshold
    t = bench._CLEAN_FAULTS
    assert bench._by_state([1.0, 2.0], [t - 1, t])["clean_calls"] == 1


def test_a_state_without_calls_has_no_best():
    out = bench._by_state([0.02, 0.03], [9000, 9100])
    assert out["clean_calls"] == 0 and out["clean_best"] is None
    assert out["faulting_best"] == 0.02


def test_states_line_compares_like_with_like():
    def run(clean, faulting, n_clean, n_faulting):
        return {
            "clean_best": clean,
            "faulting_best": faulting,
            "clean_calls": n_clean,
            "faulting_calls": n_faulting,
        }

    runs = {
        "ours": [run(0.014, 0.024, 3, 2), run(None, 0.022, 0, 5), run(0.013, None, 5, 0)],
        "nt": [run(None, 0.15, 0, 5), run(None, 0.145, 0, 5), run(None, 0.16, 0, 5)],
    }
    line = bench._states_line(runs)
    assert "ntk_bayes 8 of 15 calls without fresh pages" in line
    assert "clean best 0.0130 s, faulting best 0.0220 s" in line
    assert "neural-tangents 0 of 15 calls without fresh pages (faulting best 0.1450 s)" in line
    # only the state both libraries reached is compared: 0.145 / 0.022
    assert "faulting vs faulting: 6.6x" in line
    assert "clean vs clean" not in line
