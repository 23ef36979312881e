#!/usr/bin/env python3
"""Loads an rnnkit tagger checkpoint into PyTorch and tags a CoNLL file with it, so its
predictions can be compared with `rnnkit tag predict` (docs/checkpoint-format.md).

  python3 tools/torch_tagger.py MODEL.safetensors FILE.conll > torch_pred.txt
  rnnkit tag predict --model MODEL.safetensors --input FILE.conll > rnnkit_pred.txt
  diff <(cut -d' ' -f1,5 torch_pred.txt) <(cut -d' ' -f1,5 rnnkit_pred.txt)

Needs torch, pytorch-crf and safetensors. Covers LSTM taggers (the default), CRF or softmax.
"""
import json, sys

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file
from torchcrf import CRF


def casing(w):
    n, digits = max(len(w), 1), sum(c.isnumeric() for c in w)
    if digits == n: return 1
    if digits * 2 > n: return 2
    if all(not c.isalpha() or c.islower() for c in w): return 3
    if all(not c.isalpha() or c.isupper() for c in w): return 4
    if w[:1].isupper(): return 5
    return 6 if digits else 7


def allowed(labels, scheme):
    """The moves the scheme allows, as rnnkit's constrained CRF computes them."""
    def split(l):
        return ("O", "") if l == "O" else (l[0], l[2:])
    def ok(frm, to):
        open_ty = frm[1] if frm and frm[0] in "BI" else None
        if to is None:
            return not (scheme == "bioes" and open_ty is not None)
        p, ty = to
        if scheme == "bioes":
            return open_ty == ty if p in "IE" else open_ty is None
        if scheme == "iob2" and p == "I": return open_ty == ty
        if scheme == "iob1" and p == "B": return open_ty == ty
        return p not in "ES"
    parts = [split(l) for l in labels]
    return ([ok(None, p) for p in parts], [ok(p, None) for p in parts],
            [[ok(f, t) for t in parts] for f in parts])


class Tagger(nn.Module):
    def __init__(self, cfg, sd):
        super().__init__()
        r = cfg["rnn"]
        self.word = nn.Embedding(cfg["words"], cfg["word_dim"])
        self.char = nn.Embedding(cfg["chars"], cfg["char_dim"]) if cfg["char_dim"] else None
        self.char_rnn = nn.LSTM(cfg["char_dim"], cfg["char_hidden"], bidirectional=True) if cfg["char_dim"] else None
        self.casing = nn.Embedding(8, cfg["casing_dim"]) if cfg["casing_dim"] else None
        self.rnn = nn.LSTM(r["input"], r["hidden"], r["layers"], bidirectional=r["bidirectional"])
        self.output = nn.Linear(r["hidden"] * (2 if r["bidirectional"] else 1), cfg["labels"])
        self.crf = CRF(cfg["labels"]) if cfg["output"] == "crf" else None
        names = {"word_embedding.weight": "word.weight", "char_embedding.weight": "char.weight",
                 "casing_embedding.weight": "casing.weight"}
        self.load_state_dict({names.get(k, k): v for k, v in sd.items()})

    def forward(self, words, chars, case):
        parts = [self.word(words)]
        if self.char is not None:
            lengths = torch.tensor([len(c) for c in chars])
            padded = nn.utils.rnn.pad_sequence([torch.tensor(c) for c in chars])
            packed = nn.utils.rnn.pack_padded_sequence(self.char(padded), lengths, enforce_sorted=False)
            _, (h, _) = self.char_rnn(packed)
            parts.append(torch.cat([h[0], h[1]], dim=-1))
        if self.casing is not None:
            parts.append(self.casing(case))
        y, _ = self.rnn(torch.cat(parts, dim=-1).unsqueeze(1))
        return self.output(y)  # [T, 1, K]


def main():
    path, conll = sys.argv[1], sys.argv[2]
    with safe_open(path, "pt") as f:
        meta = json.loads(f.metadata()["rnnkit"])
    assert meta["task"] == "tag", meta["task"]
    cfg, v = meta["model"], meta["vocabs"]
    model = Tagger(cfg, load_file(path)).eval()
    widx = {w: i for i, w in enumerate(v["words"]["tokens"])}
    cidx = {c: i for i, c in enumerate(v["chars"]["tokens"])}
    labels = v["labels"]["tokens"]
    if model.crf is not None and cfg["constrained"]:
        s, e, t = allowed(labels, cfg["scheme"])
        with torch.no_grad():
            model.crf.start_transitions += torch.tensor([0.0 if a else -1e4 for a in s])
            model.crf.end_transitions += torch.tensor([0.0 if a else -1e4 for a in e])
            model.crf.transitions += torch.tensor([[0.0 if a else -1e4 for a in row] for row in t])
    sent = []
    def flush():
        if not sent: return
        toks = [l.split()[0] for l in sent]
        words = torch.tensor([widx.get(w.lower(), 1) for w in toks]).unsqueeze(1)[:, 0]
        chars = [[cidx.get(c, 1) for c in w] for w in toks]
        case = torch.tensor([casing(w) for w in toks])
        with torch.no_grad():
            em = model(words, chars, case)
            ids = model.crf.decode(em)[0] if model.crf is not None else em[:, 0].argmax(-1).tolist()
        for line, i in zip(sent, ids):
            tag = labels[i]
            if cfg["scheme"] == "bioes":  # rnnkit writes BIO by default: S- → B-, E- → I-
                tag = {"S": "B", "E": "I"}.get(tag[0], tag[0]) + tag[1:]
            print(f"{line} {tag}")
        print()
        sent.clear()
    for line in open(conll, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            flush()
        elif not line.startswith("-DOCSTART-"):
            sent.append(line)
    flush()


if __name__ == "__main__":
    main()
