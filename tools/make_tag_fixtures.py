#!/usr/bin/env python3
"""Writes the tagging fixtures that rnnkit's tests read:

  tests/fixtures/crf.safetensors   pytorch-crf's log-likelihood, its gradients and Viterbi paths
  tests/fixtures/seqeval.json      seqeval's entity scores on random tag files, ill-formed ones included

Needs torch, pytorch-crf, seqeval and safetensors (pip install torch pytorch-crf seqeval safetensors);
CI never runs this script, it runs the Rust tests that read its output. Regenerate with:
  python3 tools/make_tag_fixtures.py tests/fixtures
"""
import json, os, random, sys

import torch
from safetensors.torch import save_file
from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score
from torchcrf import CRF

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
os.makedirs(out, exist_ok=True)

# --- CRF: time-major emissions [T, B, K], a mask from per-sequence lengths ---------------------
torch.manual_seed(0)
T, B, K = 6, 4, 5
lengths = [6, 3, 1, 5]
crf = CRF(K)  # batch_first=False, as rnnkit's [T, B, K]
em = torch.randn(T, B, K, requires_grad=True)
tags = torch.randint(0, K, (T, B))
mask = torch.tensor([[t < l for l in lengths] for t in range(T)])
llh = crf(em, tags, mask=mask, reduction="sum")
llh.backward()
paths = crf.decode(em, mask=mask)
tensors = {
    "start_transitions": crf.start_transitions, "end_transitions": crf.end_transitions,
    "transitions": crf.transitions, "emissions": em,
    "grad.start_transitions": crf.start_transitions.grad, "grad.end_transitions": crf.end_transitions.grad,
    "grad.transitions": crf.transitions.grad, "grad.emissions": em.grad,
    "tags": tags.float(),
}
tensors = {k: v.detach().contiguous().float() for k, v in tensors.items()}
meta = {"T": T, "B": B, "K": K, "lengths": lengths, "llh": llh.item(), "paths": paths}
save_file(tensors, os.path.join(out, "crf.safetensors"), metadata={"case": json.dumps(meta)})

# --- seqeval: random gold and predicted tag files ----------------------------------------------
rng = random.Random(1)
TYPES = ["PER", "LOC", "ORG", "MISC", "Город"]


def random_tags(n, scheme):
    tags, inside = [], None
    for _ in range(n):
        r = rng.random()
        ty = rng.choice(TYPES)
        if r < 0.45:
            tags.append("O"); inside = None
        elif scheme == "bioes":
            tags.append(rng.choice(["B", "I", "E", "S"]) + "-" + (inside or ty)); inside = ty
        elif r < 0.7:
            tags.append("B-" + ty); inside = ty
        elif r < 0.95:
            # Mostly continue the open entity; sometimes I- after O or a type change (ill-formed).
            tags.append("I-" + (inside if inside and rng.random() < 0.8 else ty)); inside = ty
        else:
            tags.append("I-" + ty); inside = ty
    return tags


cases = []
for case in range(12):
    scheme = "bioes" if case % 4 == 3 else "bio"
    sents = [rng.randint(1, 15) for _ in range(rng.randint(1, 30))]
    gold = [random_tags(n, scheme) for n in sents]
    pred = [[t if rng.random() < 0.7 else rng.choice(random_tags(1, scheme)) for t in s] for s in gold]
    report = classification_report(gold, pred, output_dict=True, zero_division=0)
    per_type = {ty: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]), "support": int(v["support"])}
                for ty, v in report.items() if ty not in ("micro avg", "macro avg", "weighted avg")}
    cases.append({
        "gold": gold, "pred": pred,
        "precision": float(precision_score(gold, pred, zero_division=0)), "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1": float(f1_score(gold, pred, zero_division=0)), "accuracy": float(accuracy_score(gold, pred)), "per_type": per_type,
    })
json.dump({"seqeval": "1.2.2", "cases": cases}, open(os.path.join(out, "seqeval.json"), "w"), ensure_ascii=False)
print(f"crf llh {llh.item():.6f}; {len(cases)} seqeval cases")
