"""A character language model from Python: train it briefly on tinyshakespeare, save, load,
generate (whole and streamed), score, and look inside with trace."""

import numpy as np

import rnnkit
from _data import data_dir, workdir

text = (data_dir() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
work = workdir("lm")
cut = int(len(text) * 0.9)
(work / "train.txt").write_text(text[:cut], encoding="utf-8")
(work / "valid.txt").write_text(text[cut:], encoding="utf-8")

summary = rnnkit.train(
    "lm", out=work / "run", overwrite=True, train=work / "train.txt", valid=work / "valid.txt",
    tokenizer="char", embed=64, hidden=128, layers=1, batch_size=32, bptt=64, max_tokens=300_000,
    eval_every=100, threads=2,
)
print(f"trained {summary['tokens']} characters: validation loss {summary['valid_loss']:.3f} nats")

lm = rnnkit.load(work / "run" / "model.safetensors")
print("ROMEO:" + lm.generate("ROMEO:", max_tokens=120, temperature=0.8, seed=1))
for piece in lm.stream("JULIET:", max_tokens=40, seed=2):
    print(piece, end="", flush=True)
print()
good, bad = lm.score(["To be, or not to be, that is the question.", "qzx vvk jjjw pqpq zzkq"])
print(f"nats per character: Shakespeare {good:.2f}, noise {bad:.2f}")
trace = lm.trace("To be, or not to be")
layer = trace["layers"][0]
print("hidden", layer["h"].shape, "gates", layer["gates"].shape, trace["gate_names"])
after_be = trace["task"]["next_tokens"][4][:3]
print("most likely after 'To be':", after_be, np.round(trace["task"]["next_probs"][4][:3], 3))
assert good < bad
