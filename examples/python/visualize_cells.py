"""Visualising a recurrent network (Karpathy, Johnson and Fei-Fei 2015): train a character LSTM
on tinyshakespeare for a few minutes, then colour a passage by one cell's activation, and draw
that cell's four gates over it.

The cell shown is the one whose state best follows the position within the line (the
"line length" cells of the paper); any other feature of the text works the same way.

    RNNKIT_DATA_DIR=../shared/data python examples/python/visualize_cells.py --minutes 3 --out cells.png
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import rnnkit
from _data import data_dir, workdir

ap = argparse.ArgumentParser()
ap.add_argument("--minutes", type=float, default=float(os.environ.get("RNNKIT_EXAMPLE_MINUTES", 3)))
ap.add_argument("--out", default=None, help="the PNG (default: cells.png in the example's folder)")
args = ap.parse_args()

text = (data_dir() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
work = workdir("cells")
cut = int(len(text) * 0.9)
(work / "train.txt").write_text(text[:cut], encoding="utf-8")
summary = rnnkit.train(
    "lm", out=work / "run", overwrite=True, train=work / "train.txt", tokenizer="char",
    embed=64, hidden=256, layers=1, batch_size=32, bptt=100, lr=0.002, optim="adam",
    minutes=args.minutes, epochs=100, threads=2,
)
print(f"trained {summary['tokens']:,} characters in {summary['wall_s']:.0f} s")

lm = rnnkit.load(work / "run" / "model.safetensors")
passage = text[cut + 1000 : cut + 1600]
trace = lm.trace(passage)
layer = trace["layers"][0]
c = np.tanh(layer["c"])  # [T, H], what the output gate reads
chars = trace["tokens"]
column, position = 0, []
for ch in chars:
    position.append(column)
    column = 0 if ch == "\n" else column + 1
position = np.array(position, dtype=np.float64)
corr = np.array([np.corrcoef(c[:, j], position)[0, 1] if c[:, j].std() > 0 else 0 for j in range(c.shape[1])])
cell = int(np.nanargmax(np.abs(corr)))
print(f"cell {cell} follows the position in the line: correlation {corr[cell]:+.2f}")

# The passage coloured by the cell: blue -1 … red +1.
cols = 64
fig, (ax, gx) = plt.subplots(2, 1, figsize=(12, 9), gridspec_kw={"height_ratios": [3, 1.2]})
cmap = plt.get_cmap("coolwarm")
x = y = 0
for ch, v in zip(chars, c[:, cell]):
    if ch == "\n" or x >= cols:
        x, y = 0, y + 1
        if ch == "\n":
            continue
    ax.add_patch(Rectangle((x, -y - 1), 1, 1, color=cmap((v + 1) / 2)))
    ax.text(x + 0.5, -y - 0.5, ch, ha="center", va="center", family="monospace", fontsize=9)
    x += 1
ax.set_xlim(0, cols)
ax.set_ylim(-y - 1, 0)
ax.axis("off")
ax.set_title(f"tanh(c) of LSTM cell {cell} over a validation passage (blue −1, red +1); "
             f"correlation with the position in the line {corr[cell]:+.2f}")
# Its gates over the first characters.
n = min(len(chars), 120)
g = layer["gates"][:n, :, cell].T.copy()  # [4, n]
names = list(trace["gate_names"])
if "cell" in names:  # the candidate is in (-1, 1): shown as (g + 1) / 2 on the same scale
    g[names.index("cell")] = (g[names.index("cell")] + 1) / 2
    names[names.index("cell")] = "cell (g+1)/2"
gx.imshow(g, aspect="auto", cmap="viridis", vmin=0, vmax=1)
gx.set_yticks(range(len(names)), names)
gx.set_xticks(range(n), [ch if ch != "\n" else "⏎" for ch in chars[:n]], family="monospace", fontsize=6)
gx.set_title(f"cell {cell}'s gates over the first {n} characters (0 dark, 1 bright)")
fig.tight_layout()
out = args.out or str(work / "cells.png")
fig.savefig(out, dpi=110)
print("wrote", out)
