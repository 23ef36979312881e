#!/usr/bin/env python3
"""Writes the PyTorch parity fixtures that rnnkit's tests load (tests/fixtures/*.safetensors).

Needs torch and safetensors (pip install torch safetensors); CI never runs this script, it runs the
Rust tests that read its output. Regenerate with:  python3 tools/make_fixtures.py tests/fixtures

Each recurrent case holds the layer's weights under PyTorch's own names, an input x [T, B, I],
lengths, an initial state, the outputs, final states, a scalar loss
    L = sum(y * ry) + sum(h_n * rh) + sum(c_n * rc)
with its random projections, and every gradient (grad.<name>, grad.x, grad.h0, grad.c0).
"""
import json, os, sys

import torch
import torch.nn as nn
from safetensors.torch import save_file

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
T, B, I, H = 5, 3, 4, 6
CELLS = {"rnn": lambda **k: nn.RNN(nonlinearity="tanh", **k), "rnn_relu": lambda **k: nn.RNN(nonlinearity="relu", **k),
         "lstm": nn.LSTM, "gru": nn.GRU}


def save(name, tensors, meta):
    tensors = {k: v.detach().contiguous().float() for k, v in tensors.items()}
    save_file(tensors, os.path.join(out, name + ".safetensors"), metadata={"case": json.dumps(meta)})


CASES = [(cell, layers, bidir, var, (T, B, I, H), "")
         for cell in CELLS for layers in (1, 2) for bidir in (False, True) for var in (False, True)]
# Wide enough (B·H·G >= 8192, H >= 32) that a time loop on two threads splits hidden units
# (rnnkit runs the two directions at once instead; engine::rnn tests that the schedules agree).
CASES += [(cell, 1, True, True, (2, 64, 8, 32), "_wide") for cell in ("lstm", "gru")]
for cell, layers, bidir, var, (T, B, I, H), suffix in CASES:
                ctor = CELLS[cell]
                D = 2 if bidir else 1
                rnn = ctor(input_size=I, hidden_size=H, num_layers=layers, bidirectional=bidir)
                x = torch.randn(T, B, I, requires_grad=True)
                h0 = torch.randn(layers * D, B, H, requires_grad=True)
                c0 = torch.randn(layers * D, B, H, requires_grad=True)
                lengths = torch.tensor(([T, 2, T - 1] * B)[:B] if var else [T] * B)
                state = (h0, c0) if cell == "lstm" else h0
                if var:
                    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
                    y, st = rnn(packed, state)
                    y, _ = nn.utils.rnn.pad_packed_sequence(y, total_length=T)
                else:
                    y, st = rnn(x, state)
                hn, cn = st if cell == "lstm" else (st, None)
                ry, rh = torch.randn_like(y), torch.randn_like(hn)
                loss = (y * ry).sum() + (hn * rh).sum()
                t = {"x": x, "h0": h0, "lengths": lengths.float(), "y": y, "h_n": hn, "ry": ry, "rh": rh}
                if cn is not None:
                    rc = torch.randn_like(cn)
                    loss = loss + (cn * rc).sum()
                    t.update({"c0": c0, "c_n": cn, "rc": rc})
                loss.backward()
                for n, p in rnn.named_parameters():
                    t["rnn." + n] = p
                    t["grad.rnn." + n] = p.grad
                t["grad.x"], t["grad.h0"] = x.grad, h0.grad
                if cn is not None:
                    t["grad.c0"] = c0.grad
                t["loss"] = loss.reshape(1)
                name = f"rnn_{cell}_l{layers}_{'bi' if bidir else 'uni'}_{'var' if var else 'eq'}{suffix}"
                save(name, t, {"cell": cell, "layers": layers, "bidirectional": bidir, "T": T, "B": B, "I": I, "H": H})

# LayerNorm over the last dimension, Linear, Embedding, and cross-entropy with an ignored target.
N, F, V = 7, 5, 9
ln = nn.LayerNorm(F)
with torch.no_grad():
    ln.weight.normal_(); ln.bias.normal_()
x = torch.randn(N, F, requires_grad=True)
y = ln(x); r = torch.randn_like(y); (y * r).sum().backward()
save("layer_norm", {"x": x, "weight": ln.weight, "bias": ln.bias, "y": y, "r": r, "grad.x": x.grad,
                    "grad.weight": ln.weight.grad, "grad.bias": ln.bias.grad}, {"eps": ln.eps})

lin = nn.Linear(F, V)
x = torch.randn(N, F, requires_grad=True)
y = lin(x); r = torch.randn_like(y); (y * r).sum().backward()
save("linear", {"x": x, "weight": lin.weight, "bias": lin.bias, "y": y, "r": r, "grad.x": x.grad,
                "grad.weight": lin.weight.grad, "grad.bias": lin.bias.grad}, {})

emb = nn.Embedding(V, F)
ids = torch.tensor([1, 4, 4, 0, 8, 2, 4])
y = emb(ids); r = torch.randn_like(y); (y * r).sum().backward()
save("embedding", {"ids": ids.float(), "weight": emb.weight, "y": y, "r": r, "grad.weight": emb.weight.grad}, {})

logits = (3 * torch.randn(N, V)).requires_grad_()
targets = torch.tensor([3, -100, 6, 0, 8, 8, -100])
for red in ("mean", "sum"):
    lg = logits.detach().clone().requires_grad_()
    loss = nn.functional.cross_entropy(lg, targets, ignore_index=-100, reduction=red)
    loss.backward()
    save(f"cross_entropy_{red}", {"logits": lg, "targets": targets.float(), "loss": loss.reshape(1), "grad.logits": lg.grad},
         {"reduction": red})
# Optimizers after gradient clipping: three steps of torch.nn.utils.clip_grad_norm_(max 1.0)
# and each optimizer on two parameters, from given gradients (the first two steps clip, the
# third does not).
p0, q0 = torch.randn(5, 4), torch.randn(3)
grads = [(s * torch.randn(5, 4), s * torch.randn(3)) for s in (3.0, 1.0, 0.05)]
OPTIMS = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.5),
          "momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
          "adam": lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.01),
          "adamw": lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1)}
tensors = {"p0": p0, "q0": q0}
for s, (gp, gq) in enumerate(grads):
    tensors[f"grad{s}.p"], tensors[f"grad{s}.q"] = gp, gq
for name, make in OPTIMS.items():
    p, q = p0.clone().requires_grad_(), q0.clone().requires_grad_()
    opt = make([p, q])
    for s, (gp, gq) in enumerate(grads):
        p.grad, q.grad = gp.clone(), gq.clone()
        torch.nn.utils.clip_grad_norm_([p, q], 1.0)
        opt.step()
        # Snapshots: the optimizer keeps updating p and q in place.
        tensors[f"{name}{s}.p"], tensors[f"{name}{s}.q"] = p.detach().clone(), q.detach().clone()
save("optimizers", tensors, {"max_norm": 1.0})
print("wrote", len(os.listdir(out)), "fixtures to", out)
