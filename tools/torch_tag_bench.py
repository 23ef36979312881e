#!/usr/bin/env python3
"""PyTorch equivalents of `rnnkit bench tag` and `rnnkit bench classify`, same sizes, same
synthetic workload (batches of equal-length sentences of random ids), timed the same way
(3 untimed warm-up steps, then Adam steps with clipping at 5 for training; whole batches
of 64 for inference, under torch.no_grad()).

  tagger:     word embedding 20000x100, casing 8x8, characters 80x25 into a BiLSTM 25+25
              (each word's 6 characters, packed), BiLSTM 100+100, linear to 17 tags,
              pytorch-crf's CRF (nll for training, Viterbi for inference); dropout 0.5
  classifier: embedding 20000x300, BiLSTM 150+150, max pooling over time, dropout 0.5,
              linear to 2 classes, cross-entropy

Needs torch and pytorch-crf. Usage:
  python3 tools/torch_tag_bench.py --task tag --threads 2 --json
  python3 tools/torch_tag_bench.py --task classify --threads 2 --json
"""
import argparse, json, resource, time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--task", choices=["tag", "classify"], required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--length", type=int)
p.add_argument("--steps", type=int, default=40)
p.add_argument("--json", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
B, T = a.batch_size, a.length or (14 if a.task == "tag" else 19)
WORDS = 20000


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        from torchcrf import CRF
        self.word = nn.Embedding(WORDS, 100)
        self.casing = nn.Embedding(8, 8)
        self.char = nn.Embedding(80, 25)
        self.char_rnn = nn.LSTM(25, 25, bidirectional=True)
        self.rnn = nn.LSTM(100 + 50 + 8, 100, bidirectional=True)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(200, 17)
        self.crf = CRF(17)

    def emissions(self, words, chars, casing):
        # chars: [6, T*B] -> final states of both directions per word
        _, (h, _) = self.char_rnn(self.char(chars))
        cfeat = torch.cat([h[0], h[1]], dim=-1).view(T, -1, 50)
        x = torch.cat([self.word(words), cfeat, self.casing(casing)], dim=-1)
        y, _ = self.rnn(self.drop(x))
        return self.out(self.drop(y))


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(WORDS, 300)
        self.rnn = nn.LSTM(300, 150, bidirectional=True)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(300, 2)

    def forward(self, words):
        y, _ = self.rnn(self.drop(self.emb(words)))
        return self.out(self.drop(y.max(dim=0).values))


def batch(b):
    words = torch.randint(2, WORDS, (T, b))
    return words, torch.randint(2, 80, (6, T * b)), torch.randint(1, 8, (T, b)), torch.randint(0, 17, (T, b))


def timed(n, step):
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return time.perf_counter() - start


model = Tagger() if a.task == "tag" else Classifier()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
words, chars, casing, tags = batch(B)
labels = torch.arange(B) % 2


def train_step():
    opt.zero_grad()
    if a.task == "tag":
        loss = -model.crf(model.emissions(words, chars, casing), tags, reduction="mean")
    else:
        loss = nn.functional.cross_entropy(model(words), labels)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()


model.train()
train_rate = B * a.steps / timed(a.steps, train_step)
test = [batch(64) for _ in range(max(1, B * a.steps // 64))]


def infer():
    with torch.no_grad():
        for w, c, k, _ in test:
            if a.task == "tag":
                model.crf.decode(model.emissions(w, c, k))
            else:
                model(w).softmax(-1)


model.eval()
infer_rate = 64 * len(test) / timed(1, infer)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
res = {"name": f"torch-{a.task}", "train_sentences_per_s": train_rate, "infer_sentences_per_s": infer_rate,
       "peak_rss_mib": rss, "threads": a.threads, "torch": torch.__version__}
print(json.dumps(res) if a.json else res)
