"""Batched sampling with the KV cache, and the matching full forward.

One engine serves evaluation (greedy or sampled) and RL rollouts. Prompts are left-padded; position ids
come from the attention mask so a padded row computes exactly what it would alone. An episode stops where
the paper's environment stops it: at the newline that ends the answer line after ``</scratch>``, at the
end token, or after ``max_new_tokens``.

How ``generate`` is fast on a small model (issue 20; ``benchmarks/rl_throughput.py`` measures it):

- The prompt goes through the transformers model once (the prefill), into a KV cache preallocated for the
  whole episode (``KVLayer``).
- Each decode step then runs the model's own weights in a short loop (``LlamaDecoder``, ``GPT2Decoder``): the
  operations of the transformers layers (the tests hold the two to each other), without their per-step mask
  building, cache plumbing and output classes (~20 % of a step of the 4 x 128 model at 320 rows). RoPE comes
  from a cos/sin table made by the model's own rotary embedding. Other models take every step through
  transformers (``lean=False`` forces that path).
- Finished rows leave the batch: after each step the rows that stopped are replaced by live rows from the
  end of the batch (only those rows of the KV cache are copied). The attention over the cache is most of a
  step at these shapes (60-70 % at 320 rows and 150 cached positions) and is bound by memory bandwidth (each
  step reads the whole cache), so its cost is live rows x cached positions; finished rows were 28 % (greedy) to
  40 % (T = 1) of the row-steps of a batch of 320 plus-1 prompts. Results are recorded per step in active order and scattered into the ``(B, L)``
  outputs once at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .model import autocast
from .task import END_SCRATCH, full_text
from .tokenizer import decode, encode


class KVLayer(DynamicLayer):
    """A KV-cache layer over a buffer preallocated for ``capacity`` positions; returns views of it.

    ``DynamicLayer`` concatenates the whole cache at every step (O(L^2) copies). Here the first ``n`` rows of
    the buffer are the live ones; ``keep`` moves live rows into the slots of finished ones."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity, self.n, self.len = capacity, 0, 0

    def lazy_initialization(self, key_states, value_states):
        super().lazy_initialization(key_states, value_states)
        B, H, _, D = key_states.shape
        self.k = key_states.new_empty((B, H, self.capacity, D))
        self.v = value_states.new_empty((B, H, self.capacity, D))
        self.n = B

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        s, e = self.len, self.len + key_states.shape[-2]
        self.k[:self.n, :, s:e] = key_states
        self.v[:self.n, :, s:e] = value_states
        self.len = e
        self.keys, self.values = self.k[:self.n, :, :e], self.v[:self.n, :, :e]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.len

    def keep(self, holes: torch.Tensor, src: torch.Tensor, n: int) -> None:
        """Copy rows ``src`` into rows ``holes`` (disjoint), then keep the first ``n`` rows."""
        if len(holes):
            self.k[holes, :, :self.len] = self.k[src, :, :self.len]
            self.v[holes, :, :self.len] = self.v[src, :, :self.len]
        self.n = n


def new_cache(model, capacity: int) -> DynamicCache:
    """A ``DynamicCache`` whose layers are ``KVLayer``s of ``capacity`` positions."""
    cache = DynamicCache(config=model.config)
    cache.layers = [KVLayer(capacity) for _ in cache.layers]
    return cache


@dataclass
class Generation:
    """A batch of completions; per-token tensors are ``(B, L)`` and valid where ``completion_mask``
    (``completion_ids`` is the pad token and the other per-token tensors are 0 elsewhere)."""

    prompt_ids: torch.Tensor        # (B, P) left-padded prompts
    prompt_mask: torch.Tensor       # (B, P) 1 on prompt tokens
    completion_ids: torch.Tensor    # (B, L) sampled tokens, pad after the stop
    completion_mask: torch.Tensor   # (B, L) 1 on tokens up to and including the stop token
    logprobs: torch.Tensor          # (B, L) log pi(a_t | s_t) at the sampling temperature (T=1 if greedy)
    entropies: torch.Tensor         # (B, L) entropy of pi(. | s_t) at that temperature
    values: torch.Tensor | None     # (B, L) V(s_t) from the value head, if one was given
    texts: list[str]                # decoded completions (up to the stop)
    finished: torch.Tensor          # (B,) bool: stopped by the answer newline or eos (not by length)

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.completion_ids], 1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.completion_mask], 1)


def left_pad(seqs: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(ids, mask)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only, so left padding does not shift them."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def forward(model, input_ids, attention_mask, value_head=None, cache=None, positions=None):
    """``(logits, values, hidden, cache)`` of the LM trunk + LM head (+ value head) in one pass."""
    if positions is None and attention_mask is not None:  # no mask, no positions: the model's own 0, 1, ...
        positions = position_ids(attention_mask)
    with autocast(input_ids.device):
        out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                               cache=cache, use_cache=cache is not None)
        hidden = out.last_hidden_state
        logits = model.lm_head(hidden).float()
        values = value_head(hidden).float().squeeze(-1) if value_head is not None else None
    return logits, values, hidden, out.cache if cache is not None else None


# -------------------------------------------------------------------------------------------------
# Decode steps: one new token for each live row. ``step`` returns the final hidden state, ``logits`` the LM head.
class Decoder:
    """The cache of the live rows and their padding mask (additive, over the cache positions); ``keep``
    moves live rows ``src`` into the slots ``holes`` of finished ones and keeps the first ``n`` rows."""

    def __init__(self, cache, attn_mask):
        self.layers, self.attn_mask = cache.layers, attn_mask

    def keep(self, holes, src, n):
        for layer in self.layers:
            layer.keep(holes, src, n)
        if self.attn_mask is not None:
            self.attn_mask[holes] = self.attn_mask[src]

    def attend(self, i, q, k, v, scale):
        """Write this step's ``k, v`` (n, H, D) into layer ``i`` of the cache and attend with ``q`` (n, H, D)."""
        layer, n = self.layers[i], q.shape[0]
        t = layer.len
        layer.k[:n, :, t] = k
        layer.v[:n, :, t] = v
        layer.len = t + 1
        mask = self.attn_mask[:n, :, :, :t + 1] if self.attn_mask is not None else None
        o = F.scaled_dot_product_attention(q[:, :, None], layer.k[:n, :, :t + 1], layer.v[:n, :, :t + 1],
                                           attn_mask=mask, scale=scale)
        return o.reshape(n, -1)


class LlamaDecoder(Decoder):
    """A ``LlamaForCausalLM`` step written out: q/k/v and gate/up weights concatenated so each is one
    matmul; RoPE from a cos/sin table made by the model's rotary embedding (the values it computes per step)."""

    @staticmethod
    def supports(model) -> bool:
        c = model.config
        return (type(model).__name__ == "LlamaForCausalLM" and c.hidden_act == "silu" and not c.attention_bias
                and not c.mlp_bias and c.num_key_value_heads == c.num_attention_heads
                and c.rope_parameters.get("rope_type", "default") == "default" and not model.training)

    def __init__(self, model, cache, attn_mask, capacity: int):
        super().__init__(cache, attn_mask)
        base, c = model.model, model.config
        self.H, self.D = c.num_attention_heads, c.hidden_size // c.num_attention_heads
        self.embed, self.head = base.embed_tokens.weight, model.lm_head.weight
        self.norm = (base.norm.weight, base.norm.variance_epsilon)
        self.blocks = [dict(
            n1=(L.input_layernorm.weight, L.input_layernorm.variance_epsilon),
            qkv=torch.cat([L.self_attn.q_proj.weight, L.self_attn.k_proj.weight, L.self_attn.v_proj.weight]),
            o=L.self_attn.o_proj.weight, scale=L.self_attn.scaling,
            n2=(L.post_attention_layernorm.weight, L.post_attention_layernorm.variance_epsilon),
            gu=torch.cat([L.mlp.gate_proj.weight, L.mlp.up_proj.weight]), down=L.mlp.down_proj.weight)
            for L in base.layers]
        cos, sin = base.rotary_emb(self.embed[:1], torch.arange(capacity, device=self.embed.device)[None])
        half = self.D // 2
        # rotate_half(x) * sin == roll(x, D/2) * sin with the first half of sin negated (exactly)
        self.cos, self.sin = cos[0], torch.cat([-sin[0, :, :half], sin[0, :, half:]], -1)

    @staticmethod
    def _rms(x, w_eps):
        return F.rms_norm(x, x.shape[-1:], *w_eps)  # one kernel; bitwise what LlamaRMSNorm computes in fp32

    def step(self, tokens, pos):
        n, H, D = len(tokens), self.H, self.D
        x = self.embed[tokens]
        cos, sin = self.cos[pos][:, None, None], self.sin[pos][:, None, None]  # (n, 1, 1, D)
        for i, L in enumerate(self.blocks):
            qkv = F.linear(self._rms(x, L["n1"]), L["qkv"]).view(n, 3, H, D)
            qk = qkv[:, :2] * cos + qkv[:, :2].roll(D // 2, -1) * sin
            x = x + F.linear(self.attend(i, qk[:, 0], qk[:, 1], qkv[:, 2], L["scale"]), L["o"])
            g, u = F.linear(self._rms(x, L["n2"]), L["gu"]).chunk(2, -1)
            x = x + F.linear(F.silu(g) * u, L["down"])
        return self._rms(x, self.norm)

    def logits(self, hidden):
        return F.linear(hidden, self.head)


class GPT2Decoder(Decoder):
    """A ``GPT2LMHeadModel`` step: its own layer norms, projections and MLP modules, our attention."""

    @staticmethod
    def supports(model) -> bool:
        c = model.config
        return (type(model).__name__ == "GPT2LMHeadModel" and not c.scale_attn_by_inverse_layer_idx
                and not c.reorder_and_upcast_attn and not c.add_cross_attention and not model.training)

    def __init__(self, model, cache, attn_mask, capacity: int):
        super().__init__(cache, attn_mask)
        self.tr, self.head, self.H = model.transformer, model.lm_head, model.config.n_head

    def step(self, tokens, pos):
        n, tr = len(tokens), self.tr
        x = tr.wte(tokens) + tr.wpe(pos)
        for i, blk in enumerate(tr.h):
            q, k, v = blk.attn.c_attn(blk.ln_1(x)).view(n, 3, self.H, -1).unbind(1)
            x = x + blk.attn.c_proj(self.attend(i, q, k, v, blk.attn.scaling))
            x = x + blk.mlp(blk.ln_2(x))
        return tr.ln_f(x)

    def logits(self, hidden):
        return self.head(hidden)


class HFDecoder(Decoder):
    """A step through the transformers model: any model; the reference the tests hold the lean steps to."""

    def __init__(self, model, cache, prompt_mask, capacity: int):
        super().__init__(cache, None)
        self.model, self.cache = model, cache
        B, P = prompt_mask.shape
        self.mask = torch.cat([prompt_mask, prompt_mask.new_ones((B, capacity - P))], 1)

    def keep(self, holes, src, n):
        super().keep(holes, src, n)
        self.mask[holes] = self.mask[src]

    def step(self, tokens, pos):
        n, t = len(tokens), self.layers[0].len
        out = self.model.base_model(input_ids=tokens[:, None], attention_mask=self.mask[:n, :t + 1],
                                    position_ids=pos[:, None], cache=self.cache, use_cache=True)
        return out.last_hidden_state[:, 0]

    def logits(self, hidden):
        return self.model.lm_head(hidden)


# -------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate(model, tok, prompts: list[str], max_new_tokens: int, temperature: float = 1.0,
             generator: torch.Generator | None = None, value_head=None, lean: bool = True) -> Generation:
    """Sample completions of ``prompts`` (greedy when ``temperature == 0``) with the KV cache.

    ``lean=False`` runs every step through the transformers model (slower; same results up to float
    rounding). Random draws depend on the batch's composition, so a seed fixes the outputs of a given
    call, not of each prompt alone; greedy outputs do not depend on the batch."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 = greedy)")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    device = next(model.parameters()).device
    ids, mask = left_pad([encode(tok, p) for p in prompts], tok.pad_token_id, device)
    B, P = ids.shape
    nl, eos, pad = encode(tok, "\n")[0], tok.eos_token_id, tok.pad_token_id
    end_ids = torch.tensor(encode(tok, END_SCRATCH), device=device)

    # prefill through transformers, into a cache sized for the whole episode
    capacity = P + max_new_tokens
    cache = new_cache(model, capacity)
    logits, values, _, _ = forward(model, ids, mask, value_head, cache)
    logits, values = logits[:, -1], values[:, -1] if values is not None else None
    # left padding: an additive mask over the cache positions, -inf on padding (what SDPA makes of the
    # boolean mask transformers passes, made once here instead of at every layer of every step)
    attn_mask = None
    if not bool(mask.all()):
        attn_mask = torch.zeros((B, 1, 1, capacity), device=device)
        attn_mask[:, 0, 0, :P].masked_fill_(mask == 0, float("-inf"))
    if lean and LlamaDecoder.supports(model):
        dec = LlamaDecoder(model, cache, attn_mask, capacity)
    elif lean and GPT2Decoder.supports(model):
        dec = GPT2Decoder(model, cache, attn_mask, capacity)
    else:
        dec = HFDecoder(model, cache, mask, capacity)

    # state of the live rows, in active order; rows[i] is the prompt index of live row i
    rows = torch.arange(B, device=device)
    pos = mask.sum(1)                           # position of the token fed at the next step
    tail = ids[:, -len(end_ids):].clone()       # last characters, to spot "</scratch>"
    closed = torch.zeros(B, dtype=torch.bool, device=device)
    newlines = torch.zeros(B, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    record = []                                 # per step: (rows, tokens, logprobs, entropies, values)
    for step in range(max_new_tokens):
        if step:
            with autocast(device):
                hidden = dec.step(a, pos)
                pos = pos + 1
                logits = dec.logits(hidden).float()
                values = value_head(hidden).float().squeeze(-1) if value_head is not None else None
        if temperature == 0:
            logp = F.log_softmax(logits, -1)
            a = logits.argmax(-1)
        else:
            logp = F.log_softmax(logits / temperature, -1)
            a = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
        record.append((rows, a, logp.gather(-1, a[:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1), values))
        # stop rule: eos, or the newline that ends the answer line after </scratch>
        tail = torch.cat([tail[:, 1:], a[:, None]], 1)
        closed |= (tail == end_ids).all(-1)
        newlines += (closed & (a == nl)).long()
        stop = (a == eos) | (newlines >= 2)
        if bool(stop.any()):
            finished[rows[stop]] = True
            n = len(rows) - int(stop.sum())
            if n == 0:
                break
            # drop the stopped rows: move the live rows beyond n into the stopped slots below n
            holes = stop[:n].nonzero().squeeze(1)
            src = (~stop[n:]).nonzero().squeeze(1) + n
            perm = torch.arange(n, device=device)
            perm[holes] = src
            rows, a, pos, tail, closed, newlines = (x[perm] for x in (rows, a, pos, tail, closed, newlines))
            dec.keep(holes, src, n)

    # scatter the per-step records (live rows in active order) into the (B, L) outputs
    rows_at, toks, lps, ents, vals = zip(*record)
    r = torch.cat(rows_at)
    c = torch.cat([torch.full_like(x, step) for step, x in enumerate(rows_at)])

    def to_bl(parts, fill):
        out = torch.full((B, len(record)), fill, dtype=parts[0].dtype, device=device)
        out[r, c] = torch.cat(parts)
        return out

    comp, cmask = to_bl(toks, pad), to_bl([torch.ones_like(x) for x in rows_at], 0)
    texts = [decode(tok, row[m.bool()]) for row, m in zip(comp.cpu(), cmask.cpu())]
    return Generation(prompt_ids=ids, prompt_mask=mask, completion_ids=comp, completion_mask=cmask,
                      logprobs=to_bl(lps, 0.0), entropies=to_bl(ents, 0.0),
                      values=to_bl(vals, 0.0) if value_head is not None else None, texts=texts, finished=finished)


@torch.no_grad()
def teacher_forced(model, tok, problems, batch_size: int = 64):
    """Per text: ``(ids, logits)`` of a full forward over the true prompt + scratchpad. Position ``i`` of
    the returned logits predicts character ``i`` (so index 0 is never predicted).

    Texts go through in order of length (little padding per batch) and through ``packed_forward`` (no
    attention mask: the profile of issue 20 loses its ``aten::where``)."""
    model.eval()
    device = next(model.parameters()).device
    seqs = [encode(tok, full_text(a, b)) for a, b in problems]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = [None] * len(seqs)
    for s in range(0, len(order), batch_size):
        chunk = order[s:s + batch_size]
        ids, mask = left_pad([seqs[i] for i in chunk], tok.pad_token_id, device)
        logits = packed_forward(model, ids, mask)[0]
        for r, i in enumerate(chunk):
            lg = logits[r, ids.shape[1] - len(seqs[i]):]
            out[i] = (torch.tensor(seqs[i]), torch.cat([torch.full_like(lg[:1], float("nan")), lg[:-1]]))
    return out


def run_starts(mask: torch.Tensor) -> torch.Tensor | None:
    """``(B, 1)``: where each row's real tokens start, if in every row they are one run; else None."""
    start = mask.long().argmax(-1, keepdim=True)
    cols = torch.arange(mask.shape[1], device=mask.device)
    run = (cols >= start) & (cols < start + mask.long().sum(-1, keepdim=True))
    return start if torch.equal(run, mask.bool()) else None


def packed_forward(model, input_ids, attention_mask, value_head=None):
    """``forward`` without its attention mask where each row's real tokens are one run (left padding before,
    right padding after, as in a ``Generation``): each row is rolled so its run starts at position 0, the
    padding goes after it, where the causal mask keeps real tokens from seeing it; the outputs are rolled
    back. Same ``(logits, values, hidden)`` at the real tokens as the masked forward, through the mask-free
    attention path (issue 20). Any other mask takes the masked forward."""
    B, W = attention_mask.shape
    start = run_starts(attention_mask)
    if start is None:
        return forward(model, input_ids, attention_mask, value_head)[:3]
    cols = torch.arange(W, device=input_ids.device)
    rolled = input_ids.gather(1, (cols + start) % W)
    logits, values, hidden, _ = forward(model, rolled, None, value_head)
    back = (cols - start) % W
    unroll = lambda x: x.gather(1, back[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
    return unroll(logits), (values.gather(1, back) if values is not None else None), unroll(hidden)


def completion_logits(model, gen: Generation, value_head=None):
    """Full forward over prompt + completion: ``(logits, values, hidden)`` at the states that produced
    each completion token, each ``(B, L, ...)`` aligned with ``gen.completion_ids``."""
    P = gen.prompt_ids.shape[1]
    L = gen.completion_ids.shape[1]
    logits, values, hidden = packed_forward(model, gen.input_ids, gen.attention_mask, value_head)
    sl = slice(P - 1, P - 1 + L)  # the state before token t is the position of token t-1
    return logits[:, sl], (values[:, sl] if values is not None else None), hidden[:, sl]


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log softmax(logits / T)[tokens]`` per position."""
    return F.log_softmax(logits / temperature, -1).gather(-1, tokens[..., None]).squeeze(-1)
