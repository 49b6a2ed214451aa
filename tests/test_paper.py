from critkl import paper
from critkl.config import MODEL_PRESETS, ModelConfig
from critkl.model import model_text


def test_words_join_values_for_prose():
    assert paper.words((7, 9, 11, 13)) == "7, 9, 11 and 13"
    assert paper.words((7, 9, 11, 13), "or") == "7, 9, 11 or 13"
    assert paper.words((0.5,)) == "0.5" and paper.words([2, 3]) == "2 and 3"


def test_model_texts_come_from_the_data():
    assert paper.model_text() == f"GPT-2, ~{paper.MODEL['params_millions']}M parameters"
    assert model_text(ModelConfig(**MODEL_PRESETS["cpu"])) == "Llama, 4 layers x 128, 1.06M parameters"
    assert model_text(ModelConfig(**MODEL_PRESETS["tiny"])) == "Llama, 2 layers x 32, 0.03M parameters"
