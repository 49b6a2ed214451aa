import pytest
from transformers import AutoTokenizer

from critkl import task
from critkl.tokenizer import CHARS, build_tokenizer, decode, encode


def test_roundtrip_every_char_and_texts():
    tok = build_tokenizer()
    assert decode(tok, encode(tok, CHARS)) == CHARS
    for a, b in [(56, 789), (99, 1), (0, 0), (123456789, 98)]:
        t = task.full_text(a, b)
        ids = encode(tok, t)
        assert len(ids) == len(t)
        assert decode(tok, ids) == t
    # every character the task can produce is in the vocabulary
    assert set(task.full_text(1234567890, 9876543210)) <= set(CHARS)


def test_special_tokens_and_size():
    tok = build_tokenizer()
    assert len(tok) == len(CHARS) + 3
    assert tok.pad_token == "<pad>" and tok.eos_token == "<eos>"
    assert decode(tok, encode(tok, "1+2") + [tok.eos_token_id, tok.pad_token_id]) == "1+2"


def test_unknown_character_raises():
    tok = build_tokenizer()
    with pytest.raises(ValueError, match=r"\['x'\]"):
        encode(tok, "1+x")


def test_save_load_autotokenizer(tmp_path):
    tok = build_tokenizer()
    tok.save_pretrained(tmp_path)
    tok2 = AutoTokenizer.from_pretrained(tmp_path)
    t = task.full_text(56, 789)
    assert encode(tok2, t) == encode(tok, t)
    assert tok2.pad_token_id == tok.pad_token_id and len(tok2) == len(tok)
