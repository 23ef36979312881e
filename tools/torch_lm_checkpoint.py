#!/usr/bin/env python3
"""Moves language models between PyTorch and rnnkit's checkpoint format (docs/checkpoint-format.md).

  fixture DIR          write a PyTorch-made LM as an rnnkit checkpoint (DIR/torch_lm.safetensors), a text
                       (DIR/torch_lm.txt) and the loss PyTorch computes on it (DIR/torch_lm.json)
  check CKPT TEXT      load an rnnkit checkpoint into torch and print the loss PyTorch computes on TEXT,
                       batched as `rnnkit lm eval` does (batch 10, windows of 35, state carried)

Needs torch and safetensors. CI never runs this; the Rust tests read the fixture it writes.
"""
import json, math, sys

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from safetensors import safe_open


class RNNModel(nn.Module):
    """The state_dict layout of PyTorch's word_language_model example."""

    def __init__(self, cell, ntoken, ninp, nhid, nlayers, tie=False):
        super().__init__()
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](ninp, nhid, nlayers)
        self.decoder = nn.Linear(nhid, ntoken)
        if tie:
            self.decoder.weight = self.encoder.weight
        self.cell, self.tie = cell, tie

    def forward(self, x, h=None):
        y, h = self.rnn(self.encoder(x), h)
        return self.decoder(y), h


def export_rnnkit(model, vocab, path, tokenizer_kind="ptb"):
    """Writes a torch RNNModel as an rnnkit checkpoint; `vocab` lists tokens in id order."""
    sd = {k: v.detach().contiguous().float() for k, v in model.state_dict().items()}
    if model.tie:
        sd.pop("decoder.weight")
    rnn = model.rnn
    # Version 1 on purpose: the fixture it writes proves that rnnkit still reads version-1 files.
    config = {
        "format_version": 1,
        "task": "lm",
        "model": {
            "vocab": len(vocab), "embed": model.encoder.embedding_dim,
            "rnn": {"cell": model.cell, "input": rnn.input_size, "hidden": rnn.hidden_size, "layers": rnn.num_layers,
                    "bidirectional": False, "dropout": 0.0, "dropout_kind": "standard", "residual": False, "norm": "none"},
            "dropout": 0.0, "dropout_kind": "standard", "tied": model.tie, "init": {"kind": "pytorch"},
        },
        "tokenizer": {"kind": tokenizer_kind, "vocab": vocab},
    }
    save_file(sd, path, metadata={"rnnkit": json.dumps(config)})


def import_rnnkit(path):
    """Loads an rnnkit LM checkpoint into a torch RNNModel; returns (model, vocab, config)."""
    with safe_open(path, "pt") as f:
        config = json.loads(f.metadata()["rnnkit"])
    m = config["model"]
    r = m["rnn"]
    assert config["format_version"] in (1, 2) and config["task"] == "lm"
    assert r["norm"] == "none" and not r["residual"], "this snippet covers plain stacks"
    model = RNNModel(r["cell"], m["vocab"], m["embed"], r["hidden"], r["layers"], m["tied"])
    sd = load_file(path)
    if m["tied"]:
        sd["decoder.weight"] = sd["encoder.weight"]
    model.load_state_dict(sd)
    # Version 2 names its vocabularies; version 1 had one tokenizer.
    vocab = config["vocabs"]["tokens"]["tokens"] if config["format_version"] >= 2 else config["tokenizer"]["vocab"]
    return model.eval(), vocab, config


def encode_ptb(text, vocab):
    idx = {w: i for i, w in enumerate(vocab)}
    unk = idx["<unk>"]
    return [idx.get(w, unk) for line in text.splitlines() for w in line.split() + ["<eos>"]]


def lm_loss(model, ids, bsz=10, bptt=35):
    data = torch.tensor(ids)
    n = data.size(0) // bsz
    d = data[: n * bsz].view(bsz, n).t().contiguous()
    h, tot, cnt = None, 0.0, 0
    with torch.no_grad():
        for i in range(0, d.size(0) - 1, bptt):
            L = min(bptt, d.size(0) - 1 - i)
            out, h = model(d[i:i + L], h)
            tot += nn.functional.cross_entropy(out.view(-1, out.size(-1)), d[i + 1:i + 1 + L].reshape(-1), reduction="sum").item()
            cnt += L * bsz
    return tot / cnt, cnt


def main():
    if sys.argv[1] == "fixture":
        out = sys.argv[2]
        torch.manual_seed(7)
        words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "far", "and", "then", "slept", "under", "tree", "big"]
        g = torch.Generator().manual_seed(3)
        lines = [" ".join(words[int(i)] for i in torch.randint(0, len(words), (int(torch.randint(3, 12, (1,), generator=g)),), generator=g))
                 for _ in range(60)]
        text = "\n".join(lines) + "\n"
        vocab = ["<unk>", "<pad>", "<bos>", "<eos>"] + sorted(set(text.split()) - {"big"})  # "big" stays unknown
        model = RNNModel("lstm", len(vocab), 12, 12, 2).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.5, 0.5)
        export_rnnkit(model, vocab, f"{out}/torch_lm.safetensors")
        open(f"{out}/torch_lm.txt", "w").write(text)
        loss, cnt = lm_loss(model, encode_ptb(text, vocab), bsz=2, bptt=35)
        json.dump({"loss": loss, "tokens": cnt, "batch_size": 2, "bptt": 35}, open(f"{out}/torch_lm.json", "w"))
        print(json.dumps({"loss": loss, "tokens": cnt}))
    elif sys.argv[1] == "check":
        model, vocab, config = import_rnnkit(sys.argv[2])
        kind = config["vocabs"]["tokens"]["tokenizer"] if config["format_version"] >= 2 else config["tokenizer"]["kind"]
        assert kind in ("ptb", "word"), "this check covers word-level models"
        loss, cnt = lm_loss(model, encode_ptb(open(sys.argv[3], encoding="utf-8").read(), vocab))
        print(json.dumps({"loss": loss, "ppl": math.exp(loss), "tokens": cnt, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
