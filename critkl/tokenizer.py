"""Character-level tokenizer: one token per character of the task, plus pad/eos/unk specials.

It is a real ``transformers`` fast tokenizer (built with ``tokenizers``), so it saves with
``save_pretrained`` and loads with ``AutoTokenizer.from_pretrained(local_dir)``. There is no BOS token:
token ``i`` of a text is its character ``i``, which keeps critical-token indices equal to character offsets.
"""
from __future__ import annotations

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIALS = (PAD, EOS, UNK)
# Every character the task can produce (see critkl.task), sorted for a stable vocabulary.
CHARS = "".join(sorted(set("0123456789" "Input:\nTarget<scratch>/[],+ =-ACEND" "%")))  # % : modsum task


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A fresh character tokenizer over ``CHARS`` (ids 0..2 are pad, eos, unk)."""
    vocab = {tok: i for i, tok in enumerate(list(SPECIALS) + list(CHARS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    # Prompts are left-padded for batched generation.
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK,
                                   padding_side="left")


def check_text(tok: PreTrainedTokenizerFast, text: str) -> None:
    """Raise ValueError naming any character of ``text`` outside the tokenizer's vocabulary."""
    vocab = tok.get_vocab()
    bad = sorted({c for c in text if c not in vocab})
    if bad:
        raise ValueError(f"characters {bad!r} are not in the critkl vocabulary; allowed: {CHARS!r}")


def encode(tok: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of ``text`` (one per character); unknown characters raise ValueError."""
    check_text(tok, text)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text), "character tokenizer must give one token per character"
    return ids


def decode(tok: PreTrainedTokenizerFast, ids) -> str:
    """Text of ``ids``, dropping pad and eos."""
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    return tok.decode(ids, skip_special_tokens=True)
