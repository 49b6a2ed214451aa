import pytest
import torch
import torch.nn.functional as F

from critkl import task
from critkl.config import ModelConfig
from critkl.model import build_model
from critkl.sampling import (GPT2Decoder, LlamaDecoder, completion_logits, forward, generate, packed_forward,
                            run_starts, token_logprobs)
from critkl.tokenizer import build_tokenizer

TOL = 1e-4  # fp32: the cached step and the full forward add the same terms in a different order


@pytest.fixture(params=["llama", "gpt2"])
def model_tok(request):
    tok = build_tokenizer()
    torch.manual_seed(0)
    m = build_model(ModelConfig(arch=request.param, n_layer=2, n_embd=32, n_head=2, n_positions=512), tok)
    return m.eval(), tok


MEMORISED = [(47, 85), (3, 4), (123, 456), (9, 10)]  # scratchpads of 4 lengths: rows stop at different steps


def prompts_of(problems):
    return [task.prompt(a, b) for a, b in problems]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def trained(request):
    """A 2-layer model of each architecture that memorised the scratchpads of ``MEMORISED`` (~200 steps,
    5-7 s on one core), so greedy rows stop at their answer newline, each at its own step."""
    from critkl.pretrain import lm_loss, make_batch
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=request.param, n_layer=2, n_embd=64, n_head=2, n_positions=512), tok)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids, mask, labels = make_batch(tok, MEMORISED)
    for step in range(1, 401):
        loss = lm_loss(model, ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0:  # memorised: the teacher-forced argmax is every target token
            with torch.no_grad():
                pred = model(input_ids=ids, attention_mask=mask).logits[:, :-1].argmax(-1)
            if (pred == labels[:, 1:])[labels[:, 1:] != -100].all():
                break
    assert step < 400, "the fixture model did not memorise its scratchpads"
    return model.eval(), tok


def test_cached_logprobs_equal_full_forward(model_tok):
    model, tok = model_tok
    prompts = [task.prompt(1, 2), task.prompt(12345, 678), task.prompt(0, 99)]
    g = torch.Generator().manual_seed(0)
    gen = generate(model, tok, prompts, 40, temperature=2.0, generator=g)
    logits, _, _ = completion_logits(model, gen)
    lp = token_logprobs(logits, gen.completion_ids, 2.0)
    m = gen.completion_mask.bool()
    assert m.any()
    assert torch.allclose(lp[m], gen.logprobs[m], atol=TOL)


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


def test_lean_path_is_used(model_tok):
    model, _ = model_tok
    assert (LlamaDecoder if model.config.model_type == "llama" else GPT2Decoder).supports(model)


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


# --- on trained models: rows that stop at different steps leave the batch -----------------------------
def test_trained_rows_stop_where_memorised(trained):
    model, tok = trained
    gen = generate(model, tok, prompts_of(MEMORISED), 300, temperature=0)
    assert gen.texts == [task.scratchpad(a, b) for a, b in MEMORISED]
    assert gen.finished.all()
    assert len(set(gen.completion_mask.sum(1).tolist())) == 4  # the rows did stop at different steps


def test_greedy_is_the_full_forward_argmax(trained):
    """Greedy tokens are exactly the argmax of a teacher-forced forward over the generated text, and the
    recorded log-probs and entropies are that forward's."""
    model, tok = trained
    problems = MEMORISED + [(5, 6), (98765, 4321)]  # two the model never saw
    gen = generate(model, tok, prompts_of(problems), 300, temperature=0)
    logits, _, _ = completion_logits(model, gen)
    m = gen.completion_mask.bool()
    assert torch.equal(logits.argmax(-1)[m], gen.completion_ids[m])
    logp = F.log_softmax(logits, -1)
    assert torch.allclose(token_logprobs(logits, gen.completion_ids)[m], gen.logprobs[m], atol=TOL)
    assert torch.allclose(-(logp.exp() * logp).sum(-1)[m], gen.entropies[m], atol=TOL)


def test_sampled_logprobs_entropies_values_match_full_forward(trained):
    model, tok = trained
    torch.manual_seed(1)
    value_head = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    problems = MEMORISED * 3 + [(5, 6), (98765, 4321)]
    gen = generate(model, tok, prompts_of(problems), 300, temperature=1.5,
                   generator=torch.Generator().manual_seed(0), value_head=value_head)
    logits, values, _ = completion_logits(model, gen, value_head)
    m = gen.completion_mask.bool()
    logp = F.log_softmax(logits / 1.5, -1)
    assert torch.allclose(token_logprobs(logits, gen.completion_ids, 1.5)[m], gen.logprobs[m], atol=TOL)
    assert torch.allclose(-(logp.exp() * logp).sum(-1)[m], gen.entropies[m], atol=TOL)
    assert torch.allclose(values[m], gen.values[m], atol=TOL)
    assert (gen.values[~m] == 0).all() and (gen.logprobs[~m] == 0).all()


def test_packed_forward_equals_the_masked_forward_at_real_tokens(trained):
    """Rows rolled to start at 0 without a mask give the masked forward's outputs at every real token, for
    one-run masks (a Generation's) and, through the fallback, for a mask with a hole."""
    model, tok = trained
    torch.manual_seed(2)
    value_head = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    gen = generate(model, tok, prompts_of(MEMORISED + [(5, 6), (98765, 4321)]), 300, temperature=1.5,
                   generator=torch.Generator().manual_seed(0))
    hole = gen.attention_mask.clone()
    hole[0, -3] = 0  # row 0: real tokens, then a pad, then real tokens again (not one run)
    hole[0, -1] = 1
    assert run_starts(gen.attention_mask) is not None and run_starts(hole) is None
    for mask in (gen.attention_mask, hole):
        with torch.no_grad():
            ref = forward(model, gen.input_ids, mask, value_head)[:3]
            packed = packed_forward(model, gen.input_ids, mask, value_head)
        m = mask.bool()
        assert m.sum() > 0 and (~m).sum() > 0
        for a, b in zip(packed, ref):
            assert a.shape == b.shape
            assert torch.allclose(a[m], b[m], atol=TOL)


def test_dropping_finished_rows_matches_one_row_at_a_time(trained):
    """Greedy rows give what each prompt gives alone, whichever rows leave the batch before them."""
    model, tok = trained
    problems = [(123, 456), (3, 4), (98765, 4321), (47, 85), (9, 10), (3, 4), (5, 6)]
    batch = generate(model, tok, prompts_of(problems), 250, temperature=0)
    for i, p in enumerate(prompts_of(problems)):
        alone = generate(model, tok, [p], 250, temperature=0)
        n = int(alone.completion_mask.sum())
        assert batch.texts[i] == alone.texts[0]
        assert bool(batch.finished[i]) == bool(alone.finished[0])
        assert int(batch.completion_mask[i].sum()) == n
        assert torch.equal(batch.completion_ids[i, :n], alone.completion_ids[0, :n])
        assert torch.allclose(batch.logprobs[i, :n], alone.logprobs[0, :n], atol=TOL)


def test_a_row_that_stops_early_is_masked_after_its_stop(trained):
    model, tok = trained
    short, long_ = (3, 4), (123, 456)
    gen = generate(model, tok, prompts_of([long_, short]), 300, temperature=0)
    n = len(task.scratchpad(*short))
    assert gen.finished.tolist() == [True, True]
    assert gen.completion_mask[1, :n].all() and not gen.completion_mask[1, n:].any()
    assert (gen.completion_ids[1, n:] == tok.pad_token_id).all()
    assert (gen.logprobs[1, n:] == 0).all() and (gen.entropies[1, n:] == 0).all()
    assert gen.completion_mask.shape[1] == len(task.scratchpad(*long_))  # L = the longest episode
    # a row cut by the length limit is not finished and is valid up to the limit
    cut = generate(model, tok, prompts_of([short]), 20, temperature=0)
    assert not cut.finished[0] and cut.completion_mask.all() and cut.completion_mask.shape == (1, 20)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_lean_path_equals_the_transformers_path(trained, temperature):
    """The lean decode step computes what the transformers model computes (same draws, same tokens)."""
    model, tok = trained
    problems = MEMORISED + [(5, 6), (98765, 4321), (47, 85)]
    gens = [generate(model, tok, prompts_of(problems), 300, temperature, torch.Generator().manual_seed(3),
                     lean=lean) for lean in (True, False)]
    assert gens[0].texts == gens[1].texts
    assert torch.equal(gens[0].completion_mask, gens[1].completion_mask)
    assert torch.allclose(gens[0].logprobs, gens[1].logprobs, atol=TOL)
    assert torch.allclose(gens[0].entropies, gens[1].entropies, atol=TOL)


def test_other_models_take_the_transformers_path():
    """A model the lean path does not handle (here grouped-query attention) still generates correctly."""
    from transformers import LlamaConfig, LlamaForCausalLM
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tok.pad_token_id,
                                         eos_token_id=tok.eos_token_id)).eval()
    assert not LlamaDecoder.supports(model)
    gen = generate(model, tok, [task.prompt(1, 2), task.prompt(345, 6)], 20, temperature=0)
    logits, _, _ = completion_logits(model, gen)
    m = gen.completion_mask.bool()
    assert torch.equal(logits.argmax(-1)[m], gen.completion_ids[m])
