#!/usr/bin/env python3
"""PyTorch equivalents of `rnnkit bench tag` and `rnnkit bench classify`, same sizes, same
synthetic workload (batches of equal-length sentences of random ids), timed the same way
(3 untimed warm-up steps, then Adam steps with clipping at 5 for training; whole batches
of 64 for inference, under torch.no_grad(), 5 timed passes over the set).

  tagger:     word embedding 20000x100, casing 8x8, characters 80x25 into a BiLSTM 25+25
              (each word's 6 characters, packed), BiLSTM 100+100, linear to 17 tags,
              pytorch-crf's CRF (nll for training, Viterbi for inference); dropout 0.5
  classifier: embedding 20000x300, BiLSTM 150+150, max pooling over time, dropout 0.5,
              linear to 2 classes, cross-entropy

Needs torch and pytorch-crf. Usage:
  python3 tools/torch_tag_bench.py --task tag --threads 2 --json
  python3 tools/torch_tag_bench.py --task classify --threads 2 --json
  python3 tools/torch_tag_bench.py --task tag --threads 2 --file conll2003/test.txt --json
  python3 tools/torch_tag_bench.py --task classify --threads 2 --file sst2/test.tsv --json

--bf16 runs the forward passes under torch.autocast("cpu", dtype=torch.bfloat16) (the
losses and the CRF in fp32), as `rnnkit bench ... --precision bf16` does.

--file also times tagging a real CoNLL file, as `rnnkit bench tag --file` does: a model of
the same sizes over the file's own vocabularies, batches of 64 sentences sorted by length,
characters and sentences packed (nn.utils.rnn.pack_padded_sequence), CRF decoding masked.
For classify, the file is a TSV with a `sentence` column (SST-2's layout), lowercased and
split at whitespace, sentences packed, max pooling over each sentence's own steps.
"""
import argparse, contextlib, json, resource, time

import torch
import torch.nn as nn

p = argparse.ArgumentParser()
p.add_argument("--task", choices=["tag", "classify"], required=True)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--length", type=int)
p.add_argument("--steps", type=int, default=40)
p.add_argument("--file", help="also time a real file, as `rnnkit bench tag|classify --file`: CoNLL (tag) or TSV (classify)")
p.add_argument("--json", action="store_true")
p.add_argument("--bf16", action="store_true", help="forward passes under bf16 autocast")
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


# Timed inference passes after the warm-up, as `rnnkit bench` (one pass is a fraction of a
# second, too short to time on a shared machine).
INFER_PASSES = 5


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


def fwd():
    """The context of the forward passes: bf16 autocast with --bf16."""
    return torch.autocast("cpu", dtype=torch.bfloat16) if a.bf16 else contextlib.nullcontext()


def train_step():
    opt.zero_grad()
    if a.task == "tag":
        with fwd():
            em = model.emissions(words, chars, casing)
        loss = -model.crf(em.float(), tags, reduction="mean")
    else:
        with fwd():
            logits = model(words)
        loss = nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()


model.train()
train_rate = B * a.steps / timed(a.steps, train_step)
test = [batch(64) for _ in range(max(1, B * a.steps // 64))]


def infer():
    with torch.no_grad():
        for w, c, k, _ in test:
            with fwd():
                out = model.emissions(w, c, k) if a.task == "tag" else model(w)
            if a.task == "tag":
                model.crf.decode(out.float())
            else:
                out.float().softmax(-1)


model.eval()
infer_rate = 64 * len(test) * INFER_PASSES / timed(INFER_PASSES, infer)


def file_batches(path):
    """The file's sentences as ids (the file's own vocabularies), sorted by length, in
    batches of 64: word and casing ids [T, B], each real token's characters (time-major),
    the mask [T, B] and the lengths."""
    from torch.nn.utils.rnn import pad_sequence
    sents, cur = [], []
    for line in open(path, encoding="utf-8"):
        cols = line.split()
        if not cols:
            if cur:
                sents.append(cur)
            cur = []
        elif not cols[0].startswith("-DOCSTART-"):
            cur.append(cols[0])
    if cur:
        sents.append(cur)
    widx, cidx = {}, {}
    wid = lambda w: widx.setdefault(w.lower(), 2 + len(widx)) % WORDS
    cid = lambda c: min(cidx.setdefault(c, 2 + len(cidx)), 79)
    order = sorted(range(len(sents)), key=lambda i: len(sents[i]))
    out = []
    for k in range(0, len(order), 64):
        group = [sents[i] for i in order[k:k + 64]]
        lengths = torch.tensor([len(s) for s in group])
        mask = torch.arange(int(lengths.max())).unsqueeze(1) < lengths.unsqueeze(0)
        words = pad_sequence([torch.tensor([wid(w) for w in s]) for s in group])
        # Casing ids only shape the lookup, not the cost.
        case = pad_sequence([torch.tensor([1 + len(w) % 7 for w in s]) for s in group])
        chars = [[cid(c) for c in s[t]] for t in range(mask.shape[0]) for s in group if t < len(s)]
        out.append((words, chars, case, mask, lengths))
    return out


def tag_file(batches):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence, pad_sequence
    with torch.no_grad():
        for words, chars, case, mask, lengths in batches:
            clen = torch.tensor([len(c) for c in chars])
            padded = pad_sequence([torch.tensor(c) for c in chars])
            with fwd():
                _, (h, _) = model.char_rnn(pack_padded_sequence(model.char(padded), clen, enforce_sorted=False))
                feat = torch.zeros(words.shape[0], words.shape[1], 50, dtype=h.dtype)
                feat[mask] = torch.cat([h[0], h[1]], dim=-1)
                x = torch.cat([model.word(words), feat, model.casing(case).to(h.dtype)], dim=-1)
                y, _ = model.rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
                y, _ = pad_packed_sequence(y)
                em = model.out(y)
            model.crf.decode(em.float(), mask=mask)


def tsv_batches(path):
    """The `sentence` column's sentences as word ids (the file's own vocabulary), sorted by
    length, in batches of 64: ids [T, B] and the lengths."""
    from torch.nn.utils.rnn import pad_sequence
    rows = [line.rstrip("\n").split("\t") for line in open(path, encoding="utf-8")]
    col = rows[0].index("sentence")
    sents = [r[col].lower().split() or ["<unk>"] for r in rows[1:] if len(r) > col]
    widx = {}
    wid = lambda w: widx.setdefault(w, 2 + len(widx)) % WORDS
    order = sorted(range(len(sents)), key=lambda i: len(sents[i]))
    out = []
    for k in range(0, len(order), 64):
        group = [sents[i] for i in order[k:k + 64]]
        lengths = torch.tensor([len(s) for s in group])
        out.append((pad_sequence([torch.tensor([wid(w) for w in s]) for s in group]), lengths))
    return out


def classify_file(batches):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
    with torch.no_grad():
        for words, lengths in batches:
            with fwd():
                y, _ = model.rnn(pack_padded_sequence(model.emb(words), lengths, enforce_sorted=False))
                y, _ = pad_packed_sequence(y, padding_value=float("-inf"))
                out = model.out(y.max(dim=0).values)
            out.float().softmax(-1)


file_rate = None
if a.file:
    fb = file_batches(a.file) if a.task == "tag" else tsv_batches(a.file)
    run = (lambda: tag_file(fb)) if a.task == "tag" else (lambda: classify_file(fb))
    file_rate = sum(int(b[-1].shape[0]) for b in fb) * INFER_PASSES / timed(INFER_PASSES, run)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
res = {"name": f"torch-{a.task}", "train_sentences_per_s": train_rate, "infer_sentences_per_s": infer_rate,
       "file_infer_sentences_per_s": file_rate,
       "peak_rss_mib": rss, "threads": a.threads, "torch": torch.__version__}
print(json.dumps(res) if a.json else res)
