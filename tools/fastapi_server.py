#!/usr/bin/env python3
"""The PyTorch side of `rnnkit serve`'s load comparison: a FastAPI server of the same weights.

It loads rnnkit checkpoints by their PyTorch names (docs/checkpoint-format.md) into PyTorch
modules and answers the same JSON API for classify, tag and translate, so that
tools/serve_load.sh can drive both servers with the same requests:

  POST /v1/models/{name}/classify   {"inputs": [...]}  -> {"results": [{"label", "probs"}]}
  POST /v1/models/{name}/tag        {"inputs": [...]}  -> {"results": [{"tokens", "tags", "entities"}]}
  POST /v1/models/{name}/translate  {"inputs": [...], "beam": 5} -> {"results": [{"translation"}]}

Each request runs its inputs as one batch under torch.inference_mode(), as a plain FastAPI
deployment does (a sync endpoint on the server's thread pool; no batching across requests).
Texts are split into words as rnnkit's word tokenizer splits them and lowercased when the
vocabulary says so; the tagger is tools/torch_tagger.py's module (CRF decoding by pytorch-crf,
so it returns tags and entities but not marginals); the translator decodes as rnnkit does (beam
search ranked by log p / |y|^alpha, at most 1.5·|x| + 10 tokens, the same stopping rule).

Usage: fastapi_server.py --model sst=/tmp/sst-bench/model.safetensors --model ner=... \
         [--host 127.0.0.1] [--port 8090] [--threads 2]
Needs torch, safetensors, pytorch-crf, fastapi and uvicorn (a venv outside the repo).
"""

import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_tagger import Tagger, allowed, casing  # noqa: E402

SPECIALS = {"<unk>", "<pad>", "<bos>", "<eos>"}
PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def words(line):
    """rnnkit's word split: at whitespace, every punctuation mark or symbol a token of its own."""
    out = []
    for w in line.split():
        if w in SPECIALS:
            out.append(w)
            continue
        cur = ""
        for ch in w:
            if ch in PUNCT or not ch.isalnum():
                if cur:
                    out.append(cur)
                out.append(ch)
                cur = ""
            else:
                cur += ch
        if cur:
            out.append(cur)
    return out


def rnn_module(r):
    cell = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[r["cell"]]
    return cell(r["input"], r["hidden"], r["layers"], bidirectional=r["bidirectional"])


class Classifier(nn.Module):
    def __init__(self, cfg, sd):
        super().__init__()
        self.pooling = cfg["pooling"]
        self.bidir = cfg["rnn"]["bidirectional"]
        self.embedding = nn.Embedding(cfg["vocab"], cfg["embed"])
        self.rnn = rnn_module(cfg["rnn"])
        d = cfg["rnn"]["hidden"] * (2 if self.bidir else 1)
        if self.pooling == "attention":
            self.pool = nn.Module()
            self.pool.query = nn.Parameter(torch.zeros(d))
        self.output = nn.Linear(d, cfg["classes"])
        self.load_state_dict(sd)

    def forward(self, ids):
        """ids: a list of id lists -> probabilities [B, C]."""
        lengths = torch.tensor([len(x) for x in ids])
        x = nn.utils.rnn.pad_sequence([torch.tensor(x) for x in ids])  # [T, B]
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(x), lengths, enforce_sorted=False)
        y, h = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y)  # [T, B, D]
        mask = (torch.arange(y.shape[0]).unsqueeze(1) < lengths.unsqueeze(0)).unsqueeze(2)
        if self.pooling == "max":
            p = y.masked_fill(~mask, float("-inf")).max(0).values
        elif self.pooling == "mean":
            p = (y * mask).sum(0) / lengths.unsqueeze(1)
        elif self.pooling == "attention":
            s = (y @ self.pool.query).masked_fill(~mask[:, :, 0], float("-inf"))
            p = (F.softmax(s, dim=0).unsqueeze(2) * y).sum(0)
        else:  # last: the top layer's final states, both directions
            h = h[0] if isinstance(h, tuple) else h
            p = torch.cat([h[-2], h[-1]], dim=1) if self.bidir else h[-1]
        return F.softmax(self.output(p), dim=1)


class Translator(nn.Module):
    """rnnkit's encoder-decoder: s_0 = tanh(W_b [h_S fwd; h_1 bwd] + b); at each step the
    context d_t from s_{t-1}, the decoder cell over [z_t; d_t], the output over [s_t; d_t; z_t]."""

    def __init__(self, cfg, sd):
        super().__init__()
        assert cfg["attention"] == "additive" and cfg["decoder_cell"] == "gru", cfg
        e, hd, a = cfg["embed"], cfg["decoder_hidden"], cfg["attn_dim"]
        dk = cfg["encoder"]["hidden"] * (2 if cfg["encoder"]["bidirectional"] else 1)
        self.encoder = nn.Embedding(cfg["src_vocab"], e)
        self.rnn = rnn_module(cfg["encoder"])
        self.bridge = nn.Linear(dk, hd)
        self.attention = nn.Module()
        self.attention.weight = nn.Parameter(torch.zeros(a, hd))
        self.attention.key_weight = nn.Parameter(torch.zeros(a, dk))
        self.attention.v = nn.Parameter(torch.zeros(a))
        self.target_embedding = nn.Embedding(cfg["tgt_vocab"], e)
        self.decoder = nn.GRU(e + dk, hd)
        self.output = nn.Linear(hd + dk + e, cfg["tgt_vocab"])
        self.load_state_dict(sd)

    def encode(self, src):
        y, h = self.rnn(self.encoder(src))  # y [S, 1, Dk]
        s = torch.tanh(self.bridge(torch.cat([h[-2], h[-1]], dim=1)))
        return y, s, y @ self.attention.key_weight.T  # U y [S, 1, A]

    def step(self, tok, s, y, uy):
        """tok [K], s [K, Hd], y [S, 1, Dk] -> log-probs [K, V], the new state."""
        e = torch.tanh(uy + (s @ self.attention.weight.T).unsqueeze(0))  # [S, K, A]
        alpha = F.softmax(e @ self.attention.v, dim=0)  # [S, K]
        d = (alpha.unsqueeze(2) * y).sum(0)  # [K, Dk]
        z = self.target_embedding(tok)
        _, h = self.decoder(torch.cat([z, d], dim=1).unsqueeze(0), s.unsqueeze(0))
        s = h[0]
        return F.log_softmax(self.output(torch.cat([s, d, z], dim=1)), dim=1), s

    def beam(self, src, k, bos, eos, alpha=1.0):
        """One sentence: the best hypothesis (ids without <eos>) by log p / |y|^alpha (|y|
        counting <eos>), at most 1.5·|x| + 10 tokens, stopping as rnnkit's beam search does:
        when k hypotheses have ended and no live one can still beat the best of them."""
        y, s, uy = self.encode(torch.tensor(src).unsqueeze(1))
        cap = int(1.5 * len(src)) + 10
        norm = lambda lp, n: lp / n ** alpha  # noqa: E731
        live, states, finished = [([], 0.0)], s, []
        for t in range(cap):
            toks = torch.tensor([seq[-1] if seq else bos for seq, _ in live])
            logp, states = self.step(toks, states, y, uy)
            if t + 1 >= cap:  # the last place: every live hypothesis ends here
                for i, (seq, lp) in enumerate(live):
                    lp += logp[i, eos].item()
                    finished.append((norm(lp, len(seq) + 1), seq))
                break
            total = torch.tensor([lp for _, lp in live]).unsqueeze(1) + logp
            vals, idx = total.view(-1).topk(min(2 * k, total.numel()))
            nxt, rows = [], []
            for v, ix in zip(vals.tolist(), idx.tolist()):
                i, j = divmod(ix, total.shape[1])
                if j == eos:
                    finished.append((norm(v, len(live[i][0]) + 1), live[i][0]))
                    continue
                nxt.append((live[i][0] + [j], v))
                rows.append(i)
                if len(nxt) == k:
                    break
            best_done = max((f[0] for f in finished), default=float("-inf"))
            best_live = max(max(norm(lp, cap), norm(lp, len(q) + 1)) for q, lp in nxt)
            if len(finished) >= k and best_done >= best_live:
                break
            live, states = nxt, states[torch.tensor(rows)]
        return max(finished, key=lambda f: f[0])[1] if finished else []


def load(path):
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["rnnkit"])
    return meta, load_file(path)


def vocab_of(v):
    return {w: i for i, w in enumerate(v["tokens"])}, v.get("lowercase", False)


def encode(text, vocab, lower):
    idx, lc = vocab
    text = text.lower() if lower or lc else text
    return [idx.get(w, idx.get("<unk>", 1)) for w in words(text)]


def detokenize(toks):
    """rnnkit's detokenizer for word vocabularies (punctuation glued left, brackets right)."""
    out, glue = "", False
    for t in toks:
        left = t in {".", ",", "!", "?", ";", ":", ")", "]", "}", "%", "'", "-", "/"}
        if out and not left and not glue:
            out += " "
        out += t
        glue = t in {"(", "[", "{", "$", "'", "-", "/"}
    return out


class Served:
    def __init__(self, path):
        meta, sd = load(path)
        self.task, cfg, v = meta["task"], meta["model"], meta["vocabs"]
        if self.task == "classify":
            self.model = Classifier(cfg, sd).eval()
            self.tokens = vocab_of(v["tokens"])
            self.labels = v["labels"]["tokens"]
        elif self.task == "tag":
            self.model = Tagger(cfg, sd).eval()
            self.words = vocab_of(v["words"])
            self.chars = vocab_of(v["chars"])[0]
            self.labels = v["labels"]["tokens"]
            self.scheme = cfg["scheme"]
            if self.model.crf is not None and cfg["constrained"]:
                st, en, tr = allowed(self.labels, cfg["scheme"])
                with torch.no_grad():
                    self.model.crf.start_transitions += torch.tensor([0.0 if a else -1e4 for a in st])
                    self.model.crf.end_transitions += torch.tensor([0.0 if a else -1e4 for a in en])
                    self.model.crf.transitions += torch.tensor([[0.0 if a else -1e4 for a in r] for r in tr])
        elif self.task == "translate":
            self.model = Translator(cfg, sd).eval()
            self.src = vocab_of(v["source"])
            self.tgt = v["target"]["tokens"]
            tidx = vocab_of(v["target"])[0]
            self.bos, self.eos = tidx["<bos>"], tidx["<eos>"]
        else:
            raise SystemExit(f"{path}: task {self.task} is not served here")

    def classify(self, texts):
        probs = self.model([encode(t, self.tokens, False) or [1] for t in texts])
        return [{"label": self.labels[int(p.argmax())], "probs": dict(zip(self.labels, p.tolist()))}
                for p in probs]

    def tag(self, texts):
        out = []
        for text in texts:
            toks = words(text)
            ids = torch.tensor([self.words[0].get(w.lower(), 1) for w in toks])
            chars = [[self.chars.get(c, 1) for c in w] for w in toks]
            em = self.model(ids, chars, torch.tensor([casing(w) for w in toks]))
            tags = [self.labels[i] for i in (self.model.crf.decode(em)[0] if self.model.crf is not None
                                             else em[:, 0].argmax(-1).tolist())]
            ents, cur = [], None
            for i, tg in enumerate(tags):
                if tg[0] in "BS" or (tg[0] in "IE" and (cur is None or cur[0] != tg[2:])):
                    cur = [tg[2:], i, i + 1]
                    ents.append(cur)
                elif tg[0] in "IE":
                    cur[2] = i + 1
                else:
                    cur = None
            out.append({"tokens": toks, "tags": tags,
                        "entities": [{"type": t, "text": " ".join(toks[a:b])} for t, a, b in ents]})
        return out

    def translate(self, texts, beam):
        out = []
        for text in texts:
            ids = self.model.beam(encode(text, self.src, False), beam, self.bos, self.eos)
            out.append({"translation": detokenize([self.tgt[i] for i in ids])})
        return out


def app_for(models):
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel

    class Req(BaseModel):
        inputs: list[str]
        beam: int = 5

    app = FastAPI()

    @app.get("/v1/health")
    def health():
        return {"status": "ok", "models": sorted(models)}

    @app.post("/v1/models/{name}/{verb}")
    def verb(name: str, verb: str, r: Req):  # sync: FastAPI runs it on its thread pool
        m = models.get(name)
        if m is None or verb != m.task or not r.inputs or not (1 <= r.beam <= 16):
            raise HTTPException(400, f"model {name!r}, verb {verb!r}: unknown, or bad inputs/beam")
        with torch.inference_mode():
            if verb == "classify":
                return {"results": m.classify(r.inputs)}
            if verb == "tag":
                return {"results": m.tag(r.inputs)}
            return {"results": m.translate(r.inputs, r.beam)}

    return app


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=PATH of an rnnkit checkpoint")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {}
    for spec in args.model:
        name, _, path = spec.partition("=")
        models[name] = Served(path)
    import uvicorn
    uvicorn.run(app_for(models), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
