from critkl.regime import probe, record


def test_probe_and_record(tiny_checkpoint, tmp_path):
    row = probe(tiny_checkpoint, n=2, temperatures=(1.0,))
    assert row["N"] == 2 and 0 <= row["plus1_T1"] <= 1 and 0 <= row["greedy_min_1toN"] <= 1
    assert {"p_first_comma_mean", "certainty_critical_median", "greedy_N+2"} <= set(row)
    csv = tmp_path / "r.csv"
    record(row, csv, "first")
    df = record(row, csv, "second")
    assert list(df.note) == ["first", "second"]
