import pandas as pd
import pytest

from critkl.measure import measure, tracking_problems
from critkl.model import load_checkpoint
from critkl.pretrain import accuracy_by_digits
from critkl.regime import premise_holds, probe, probe_and_record, recipe_rows, record


def test_probe_and_record(tiny_checkpoint, tmp_path):
    row = probe(tiny_checkpoint, n=4, n_greedy=2, n_table1=3)
    assert row["level"] == 2 and set(row) >= {"plus1_T1", "comfort_T1", "plus2_T1", "fail_at_critical", "premise",
                                              "dJ_critical_max_prob_T1", "dJ_critical_entropy_T4", "config"}
    assert "-s0" not in row["config"] and row["pretrain_seed"] == 0 and row["precision"] in ("bf16", "fp32")
    # the numbers are the named quantities, recomputed here from their sources (probe rounds to 4 places)
    model, tok, _ = load_checkpoint(tiny_checkpoint)
    greedy = accuracy_by_digits(model, tok, range(1, 5), 2, seed=7).set_index("digits").accuracy
    assert row["greedy_min_1toN"] == round(min(greedy[1], greedy[2]), 4)
    assert (row["greedy_N+1"], row["greedy_N+2"]) == (round(greedy[3], 4), round(greedy[4], 4))
    df = measure(model, tok, tracking_problems(2, 1, 4, 0), 2)
    crit = df[df.critical]
    first = crit[(crit.step == 1) & (crit.name == "n+1_comma")]
    assert first.problem.nunique() == 4  # every plus-1 problem has an (N+1)-digit operand, so a first comma
    assert row["p_first_comma_mean"] == pytest.approx(round(first.p_correct.mean(), 4), abs=1e-12)
    assert row["p_critical_mean"] == pytest.approx(round(crit.p_correct.mean(), 4), abs=1e-12)
    assert row["p_other_mean"] == pytest.approx(round(df[~df.critical].p_correct.mean(), 4), abs=1e-12)
    assert row["premise"] == premise_holds(row)
    csv = tmp_path / "r.csv"
    record(row, csv, "first", command="critkl pretrain --preset tiny")
    df = record(row, csv, "second")
    assert list(df.note) == ["first", "second"]
    assert df.command.fillna("").tolist() == ["critkl pretrain --preset tiny", ""]
    assert pd.read_csv(csv).shape == df.shape


def test_probe_and_record_loops(tmp_path, monkeypatch):
    import critkl.regime as regime
    monkeypatch.setattr(regime, "probe", lambda d, n: dict(checkpoint=str(d), level=3, n=n))
    rows = probe_and_record(["a", "b"], tmp_path / "r.csv", note="t", command="c", n=5)
    assert rows.checkpoint.tolist() == ["a", "b"] and rows.n.tolist() == [5, 5]
    back = pd.read_csv(tmp_path / "r.csv")
    assert back.checkpoint.tolist() == ["a", "b"] and back.note.tolist() == ["t", "t"] and back.command.tolist() == ["c", "c"]


def test_record_keeps_every_column_and_writes_atomically(tmp_path):
    csv = tmp_path / "sub" / "r.csv"
    # an old table (before the rename N -> level) with a column the new row lacks
    csv.parent.mkdir()
    pd.DataFrame([dict(checkpoint="old", N=3, plus2_T1=0.1, note="x", command="c0")]).to_csv(csv, index=False)
    df = record(dict(checkpoint="new", level=4, extra=1.5), csv, "y", command="c1")
    assert list(df.columns) == ["checkpoint", "level", "plus2_T1", "note", "command", "extra"]
    assert df.level.tolist() == [3, 4] and df.command.tolist() == ["c0", "c1"]
    assert df.plus2_T1.isna().tolist() == [False, True] and df.extra.isna().tolist() == [True, False]
    back = pd.read_csv(csv)
    assert list(back.columns) == list(df.columns) and len(back) == 2
    assert sorted(p.name for p in csv.parent.iterdir()) == ["r.csv"]  # no temporary file left behind
    # a command given in the row itself is kept when none is passed
    assert record(dict(checkpoint="z", command="in-row"), csv).command.iloc[-1] == "in-row"


def test_premise_criteria():
    good = dict(greedy_min_1toN=0.99, plus1_T1=0.3, fail_at_critical=0.55, p_first_comma_mean=0.6)
    assert premise_holds(good)
    for col, value in [("greedy_min_1toN", 0.96), ("plus1_T1", 0.1), ("plus1_T1", 0.7), ("fail_at_critical", 0.4),
                       ("p_first_comma_mean", 0.9)]:
        assert not premise_holds({**good, col: value}), col
    from critkl.regime import missed_criteria
    assert missed_criteria(good) == []
    assert missed_criteria({**good, "plus1_T1": 0.7, "p_first_comma_mean": 0.83}) == [
        "plus1_T1 0.70, not <= 0.6", "p_first_comma_mean 0.83, not <= 0.8"]


def test_premise_summary_verdicts():
    from critkl.regime import premise_summary
    rows = pd.DataFrame(dict(
        config=["A"] * 3 + ["B"] * 2 + ["C"] * 2, pretrain_seed=[0, 1, 2, 0, 1, 0, 1],
        premise=[True, False, True, False, False, True, False],
        greedy_min_1toN=[1.0] * 7, plus1_T1=[0.2] * 7, fail_at_critical=[0.6] * 7, p_first_comma_mean=[0.5] * 7))
    s = premise_summary(rows).set_index("config")
    assert s.loc["A", "verdict"] == "holds" and s.loc["A", "premise_seeds"] == 2 and s.loc["A", "seeds"] == 3
    assert s.loc["B", "verdict"] == "fails"   # 2 seeds fail: 2 of 3 can no longer hold
    assert s.loc["C", "verdict"] == "open"    # 1 of 2 so far


def test_premise_summary_counts_a_checkpoint_probed_twice_once():
    from critkl.regime import premise_summary
    rows = pd.DataFrame(dict(
        config=["A"] * 4, checkpoint=["s0", "s1", "s1", "s2"], pretrain_seed=[0, 1, 1, 2],
        premise=[True, True, False, False],  # s1 re-probed: its latest probe fails
        greedy_min_1toN=[1.0] * 4, plus1_T1=[0.2] * 4, fail_at_critical=[0.6] * 4, p_first_comma_mean=[0.5] * 4))
    s = premise_summary(rows).set_index("config")
    assert s.loc["A", "premise_seeds"] == 1 and s.loc["A", "seeds"] == 3 and s.loc["A", "verdict"] == "fails"


def test_accuracy_by_digits_on_operands_of_different_lengths_names_its_lengths(tiny_checkpoint):
    model, tok, _ = load_checkpoint(tiny_checkpoint)
    df = accuracy_by_digits(model, tok, [2, 3], 2, seed=0, lengths="different")
    assert df.lengths.tolist() == ["different"] * 2 and df.n.tolist() == [2, 2]
    with pytest.raises(ValueError, match="lengths='both' is not allowed: one of same, different"):
        accuracy_by_digits(model, tok, [2], 2, seed=0, lengths="both")


def test_recipe_rows_keeps_the_recipe_at_the_levels_asked_one_latest_row_per_checkpoint():
    import dataclasses
    from critkl.config import config_name, pretrain_config
    name = lambda preset, n: config_name(dataclasses.asdict(pretrain_config(preset, level=n)))  # noqa: E731
    rows = pd.DataFrame(dict(config=[name("cpu-modsum", 2), name("cpu-modsum", 3), name("cpu-modsum", 3),
                                     name("tiny", 3), name("cpu-modsum", 4)],
                             checkpoint=["a", "b", "b", "c", "d"], level=[2, 3, 3, 3, 4], plus1_T1=[0.1, 0.2, 0.3, 0.9, 0.5]))
    got = recipe_rows(rows, "cpu-modsum", [3, 2])
    assert got.checkpoint.tolist() == ["a", "b"] and got.plus1_T1.tolist() == [0.1, 0.3]  # b's latest probe
    assert recipe_rows(rows, "cpu-modsum", [5]).empty and recipe_rows(pd.DataFrame(), "cpu-modsum", [3]).empty


def test_config_name_of_a_recorded_config_that_left_out_a_default_field():
    # at N = 5 the recipe's aux operands have N + 3 = 8 digits, the field's default, so the checkpoint's recorded
    # config (cache_dict) leaves aux_max_digits out; its name must still be the recipe's (the levels sweep's probe
    # failed with KeyError: 'aux_max_digits' on the first N = 5 model)
    import dataclasses
    from critkl.config import cache_dict, config_name, pretrain_config, recorded_config
    cfg = pretrain_config("cpu-modsum", level=5)
    recorded = cache_dict(cfg)
    assert cfg.aux_max_digits == 8 and "aux_max_digits" not in recorded
    assert config_name(recorded) == config_name(dataclasses.asdict(cfg))
    assert "modsum8x0.3" in config_name(recorded)
    assert recorded_config(recorded)["aux_max_digits"] == 8
    assert recorded_config(cache_dict(pretrain_config("cpu-modsum", level=4)))["aux_max_digits"] == 7  # kept as given


def test_seed_spread_names_the_widest_configuration():
    from critkl.regime import seed_spread
    rows = pd.DataFrame(dict(config=["A", "A", "A", "B", "B"], plus1_T1=[0.1, 0.3, 0.2, 0.0, 0.5],
                             greedy_min_1toN=[0.9, 1.0, 0.95, 0.99, 0.99]))
    spread, widest = seed_spread(rows, ["plus1_T1", "greedy_min_1toN"])
    assert spread.loc["A", "plus1_T1"] == pytest.approx(0.2) and spread.loc["B", "plus1_T1"] == pytest.approx(0.5)
    assert widest["plus1_T1"] == ("B", 0.0, 0.5) and widest["greedy_min_1toN"] == ("A", 0.9, 1.0)


def test_training_summary_counts_checkpoints_below_the_bound_and_still_rising():
    from critkl.regime import training_summary
    rows = []
    # worst of 1..2 digits per step: a ends at 1.0; b ends at 0.9 rising (0.8 -> 0.9); c ends at 0.5 falling
    for ckpt, worst, minutes in [("a", [0.5, 1.0], 10.0), ("b", [0.8, 0.9], 12.0), ("c", [0.7, 0.5], 30.0)]:
        for step, w in zip([100, 200], worst):
            rows += [dict(checkpoint=ckpt, step=step, level=2, digits=1, accuracy=1.0, minutes=minutes),
                     dict(checkpoint=ckpt, step=step, level=2, digits=2, accuracy=w, minutes=minutes),
                     dict(checkpoint=ckpt, step=step, level=2, digits=3, accuracy=w / 10, minutes=minutes)]
    s = training_summary(pd.DataFrame(rows), bound=0.97)
    assert s == dict(checkpoints=3, below=2, rising=1, best_plus1=pytest.approx(0.1), minutes=(10.0, 30.0))
