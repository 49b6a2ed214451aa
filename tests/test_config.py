"""The presets side by side (the book's hyper-parameter tables come from the configs the runs use)."""
import dataclasses

import pytest

from critkl.config import RLConfig, preset_table, rl_config


def test_preset_table_shows_the_fields_where_presets_differ():
    t = preset_table("rl", ["paper", "cpu-reinforce"]).set_index("field")
    assert t.loc["lr", "paper"] == RLConfig().lr and t.loc["lr", "cpu-reinforce"] == rl_config("cpu-reinforce").lr
    assert "gamma" not in t.index  # equal in both presets: left out
    full = preset_table("rl", ["paper", "cpu-reinforce"], differing=False)
    names = {f.name for f in dataclasses.fields(RLConfig)} - {"preset", "model_dir"}
    assert set(full.field) == names and full.meaning.str.len().gt(0).all()
    with pytest.raises(ValueError, match="kind='sft'"):
        preset_table("sft", ["paper"])
    with pytest.raises(ValueError, match="preset"):
        preset_table("rl", ["no-such-preset"])


def test_cpu_modsum_aux_operands_follow_the_level_unless_given():
    from critkl.config import cache_key, pretrain_config
    assert [pretrain_config("cpu-modsum", level=n).aux_max_digits for n in (2, 3, 4, 5)] == [5, 6, 7, 8]
    assert pretrain_config("cpu-modsum", level=4, aux_max_digits=6).aux_max_digits == 6
    # the shipped default keeps its key: N = 3 gets the 6 digits it was trained with
    assert cache_key(pretrain_config("cpu-modsum")) == cache_key(pretrain_config("cpu-modsum", aux_max_digits=6))
    assert pretrain_config("tiny", level=5).aux_task == "none"
