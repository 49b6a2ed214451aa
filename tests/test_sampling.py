import pytest
import torch

from critkl import task
from critkl.config import ModelConfig
from critkl.model import build_model
from critkl.sampling import completion_logits, generate, token_logprobs
from critkl.tokenizer import build_tokenizer


@pytest.fixture(params=["llama", "gpt2"])
def model_tok(request):
    tok = build_tokenizer()
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch=request.param, n_layer=2, n_embd=32, n_head=2, n_positions=512), tok)
    return m.eval(), tok


def test_cached_logprobs_equal_full_forward(model_tok):
    model, tok = model_tok
    prompts = [task.prompt(1, 2), task.prompt(12345, 678), task.prompt(0, 99)]
    g = torch.Generator().manual_seed(0)
    gen = generate(model, tok, prompts, 40, temperature=2.0, generator=g)
    logits, _, _ = completion_logits(model, gen)
    lp = token_logprobs(logits, gen.completion_ids, 2.0)
    m = gen.completion_mask.bool()
    assert m.any()
    assert torch.allclose(lp[m], gen.logprobs[m], atol=1e-4)


def test_left_padding_does_not_change_a_row(model_tok):
    model, tok = model_tok
    alone = generate(model, tok, [task.prompt(7, 8)], 30, temperature=0)
    batched = generate(model, tok, [task.prompt(123456, 7890), task.prompt(7, 8)], 30, temperature=0)
    assert batched.texts[1] == alone.texts[0]


def test_sampling_is_seeded(model_tok):
    model, tok = model_tok
    ps = [task.prompt(3, 4)] * 4
    a = generate(model, tok, ps, 20, 1.0, torch.Generator().manual_seed(5)).texts
    b = generate(model, tok, ps, 20, 1.0, torch.Generator().manual_seed(5)).texts
    assert a == b


def test_bad_arguments(model_tok):
    model, tok = model_tok
    with pytest.raises(ValueError, match="temperature=-1"):
        generate(model, tok, [task.prompt(1, 2)], 5, temperature=-1)
    with pytest.raises(ValueError, match="max_new_tokens=0"):
        generate(model, tok, [task.prompt(1, 2)], 0)


def test_stops_at_the_answer_newline():
    """A tiny model that memorised one scratchpad stops right after its answer line, as the paper's
    environment does, and its answer parses as correct."""
    from critkl.pretrain import lm_loss, make_batch
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_layer=1, n_embd=64, n_head=2, n_positions=512), tok)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, mask, labels = make_batch(tok, [(47, 85)])
    for _ in range(300):
        loss = lm_loss(model, ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 1e-3:
            break
    gen = generate(model.eval(), tok, [task.prompt(47, 85)], 300, temperature=0)
    assert gen.texts[0] == task.scratchpad(47, 85)
    assert bool(gen.finished[0]) and int(gen.completion_mask.sum()) == len(task.scratchpad(47, 85))
    assert task.is_correct(gen.texts[0], 47, 85)
