#!/usr/bin/env python3
"""PyTorch side of `rnnkit bench translate`: the same model and workload, timed the same way.

The model is bentrevett/pytorch-seq2seq tutorial 3's (Bahdanau et al.): embeddings 256, a
bidirectional GRU encoder of 512 a direction with a tanh bridge to the decoder's initial
state, additive attention, a GRU decoder of 512 fed [embedding; context], and an output layer
over [state; context; embedding]. Multi30k's vocabulary sizes (De 7,882, En 5,898), random
token ids, full teacher forcing.

- training: 3 warm-up steps, then --steps timed steps of forward, backward, clip 1 and Adam;
  target tokens/s counts `<eos>` (length + 1 a sentence), as rnnkit does;
- decoding: --sentences random sources in batches of --decode-batch, greedy and beam search
  (batched over sentences, beams as rows): exactly --max-len tokens then <eos> (held back
  until then, as `rnnkit bench translate` does with its minimum length, since a random model
  may pick <eos> at any step); one untimed greedy pass first.

With --bf16, training's forward and loss and the whole decoding run under
`torch.autocast("cpu", dtype=torch.bfloat16)`, as ../shared/bench/torch_lm_bench.py --bf16 does.

Usage: torch_translate_bench.py [--threads 2] [--bf16] [--json]
"""

import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Seq2Seq(nn.Module):
    def __init__(self, sv, tv, emb=256, enc=512, dec=512, dropout=0.5):
        super().__init__()
        self.src_emb = nn.Embedding(sv, emb)
        self.enc = nn.GRU(emb, enc, bidirectional=True)
        self.bridge = nn.Linear(2 * enc, dec)
        self.attn = nn.Linear(2 * enc + dec, dec)
        self.v = nn.Linear(dec, 1, bias=False)
        self.tgt_emb = nn.Embedding(tv, emb)
        self.dec = nn.GRUCell(emb + 2 * enc, dec)
        self.out = nn.Linear(dec + 2 * enc + emb, tv)
        self.drop = nn.Dropout(dropout)

    def encode(self, src):
        y, h = self.enc(self.drop(self.src_emb(src)))  # y [S, B, 2H]
        s = torch.tanh(self.bridge(torch.cat([h[-2], h[-1]], dim=1)))
        return y, s

    def step(self, tok, s, y):
        z = self.drop(self.tgt_emb(tok))  # [B, E]
        S = y.shape[0]
        e = torch.tanh(self.attn(torch.cat([s.unsqueeze(0).expand(S, -1, -1), y], dim=2)))
        a = F.softmax(self.v(e).squeeze(2), dim=0)  # [S, B]
        d = (a.unsqueeze(2) * y).sum(0)  # [B, 2H]
        s = self.dec(torch.cat([z, d], dim=1), s)
        return self.out(torch.cat([s, d, z], dim=1)), s

    def forward(self, src, tgt_in):
        y, s = self.encode(src)
        logits = []
        for t in range(tgt_in.shape[0]):
            o, s = self.step(tgt_in[t], s, y)
            logits.append(o)
        return torch.stack(logits)


def greedy(m, src, max_len, bos, eos):
    y, s = m.encode(src)
    b = src.shape[1]
    tok = torch.full((b,), bos, dtype=torch.long)
    done = torch.zeros(b, dtype=torch.bool)
    out = []
    for t in range(max_len + 1):
        o, s = m.step(tok, s, y)
        if t < max_len:
            o[:, eos] = float("-inf")
        tok = o.argmax(1)
        out.append(tok)
        done |= tok == eos
        if done.all():
            break
    return torch.stack(out)


def beam_search(m, src, k, max_len, bos, eos):
    y, s = m.encode(src)
    b = src.shape[1]
    y = y.repeat_interleave(k, dim=1)
    s = s.repeat_interleave(k, dim=0)
    tok = torch.full((b * k,), bos, dtype=torch.long)
    score = torch.full((b, k), float("-inf"))
    score[:, 0] = 0.0
    alive = torch.ones(b, k, dtype=torch.bool)
    hist = []
    for t in range(max_len + 1):
        o, s = m.step(tok, s, y)
        logp = F.log_softmax(o, dim=1).view(b, k, -1)
        if t < max_len:
            logp[:, :, eos] = float("-inf")
        v = logp.shape[2]
        cand = (score.unsqueeze(2) + logp).view(b, -1)
        best, idx = cand.topk(k, dim=1)
        parent = idx // v
        tok2 = idx % v
        rows = (parent + torch.arange(b).unsqueeze(1) * k).view(-1)
        s = s[rows]
        hist.append((parent, tok2))
        ended = tok2 == eos
        alive = alive.gather(1, parent) & ~ended
        score = best.masked_fill(~alive, float("-inf"))
        tok = tok2.view(-1)
        if not alive.any():
            break
    return hist


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--length", type=int, default=14)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sentences", type=int, default=256)
    ap.add_argument("--decode-batch", type=int, default=128)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=25)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="autocast the products to bfloat16")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    cast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    sv, tv, bos, eos, pad = 7882, 5898, 2, 3, 0
    m = Seq2Seq(sv, tv)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    src = torch.randint(4, sv, (a.length, a.batch_size))
    tgt = torch.randint(4, tv, (a.length, a.batch_size))
    tgt_in = torch.cat([torch.full((1, a.batch_size), bos), tgt])
    tgt_out = torch.cat([tgt, torch.full((1, a.batch_size), eos)])

    def train_step():
        opt.zero_grad()
        with cast():
            logits = m(src, tgt_in)
            loss = F.cross_entropy(logits.float().view(-1, tv), tgt_out.view(-1), ignore_index=pad)
        loss.backward()
        nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()

    m.train()
    for _ in range(3):
        train_step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        train_step()
    train_rate = a.batch_size * (a.length + 1) * a.steps / (time.perf_counter() - t0)

    m.eval()
    srcs = torch.randint(4, sv, (a.length, a.sentences))

    def decode(beam):
        t0 = time.perf_counter()
        with torch.inference_mode(), cast():
            for i in range(0, a.sentences, a.decode_batch):
                chunk = srcs[:, i : i + a.decode_batch]
                if beam == 1:
                    greedy(m, chunk, a.max_len, bos, eos)
                else:
                    beam_search(m, chunk, beam, a.max_len, bos, eos)
        return a.sentences / (time.perf_counter() - t0)

    decode(1)
    g = decode(1)
    bm = decode(a.beam)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = {
        "name": "torch-seq2seq-bigru-additive",
        "train_target_tokens_per_s": train_rate,
        "greedy_sentences_per_s": g,
        "beam_sentences_per_s": bm,
        "beam": a.beam,
        "peak_rss_mib": rss,
        "threads": torch.get_num_threads(),
        "precision": "bf16" if a.bf16 else "f32",
        "torch": torch.__version__,
    }
    if a.json:
        print(json.dumps(res))
    else:
        print(
            f"torch seq2seq train {train_rate:8.0f} target tokens/s   greedy {g:6.1f} sentences/s"
            f"   beam-{a.beam} {bm:6.1f} sentences/s   (peak RSS {rss:.0f} MiB, "
            f"{torch.get_num_threads()} threads)"
        )


if __name__ == "__main__":
    main()
