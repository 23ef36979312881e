"""A sentence classifier from Python: train briefly on SST-2, then label sentences with their
probabilities and see which words the pooling drew from."""

import numpy as np

import rnnkit
from _data import data_dir, head, workdir

sst = data_dir() / "sst2"
work = workdir("classify")
summary = rnnkit.train(
    "classify", out=work / "run", overwrite=True, train=head(sst / "train.tsv", 20_000, work / "train.tsv"),
    valid=sst / "dev.tsv", embed=64, hidden=64, pooling="attention", epochs=2, threads=2,
)
print(f"dev accuracy {summary['valid_accuracy']:.1%}")

clf = rnnkit.load(work / "run" / "model.safetensors")
texts = ["a gorgeous , witty , seductive movie .", "the plot is dull and the acting is worse ."]
labels, probs = clf.classify(texts)
for t, y, p in zip(texts, labels, probs):
    print(f"{y}  {np.round(p, 3)}  {t}")
trace = clf.trace(texts[0])
w = trace["task"]["weights"]
print("attention over the words:", [f"{tok}:{a:.2f}" for tok, a in zip(trace["tokens"], w)])
