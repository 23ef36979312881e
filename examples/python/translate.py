"""A translator from Python: train briefly on a slice of Multi30k De→En, translate greedily and
with beam search, and read the attention matrix."""

import rnnkit
from _data import data_dir, head, workdir

m30k = data_dir() / "multi30k"
work = workdir("translate")
pair = lambda name, n: (head(m30k / f"{name}.de", n, work / f"{name}.de"), head(m30k / f"{name}.en", n, work / f"{name}.en"))
summary = rnnkit.train(
    "translate", out=work / "run", overwrite=True, train=pair("train", 6_000), valid=pair("val", 300),
    embed=64, hidden=96, decoder_hidden=96, epochs=2, threads=2,
)
print(f"validation BLEU {summary['valid_bleu']:.2f}")

tr = rnnkit.load(work / "run" / "model.safetensors")
src = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
print(tr.translate(src, beam=1))
best = tr.translate(src[0], beam=5, n_best=2, attention=True)
for h in best["hypotheses"]:
    print(f"{h['score']:.3f}  {h['translation']}")
att = best["hypotheses"][0]["attention"]
print("attention", att.shape, "rows sum to", att.sum(axis=1).round(3))
