"""A named-entity tagger from Python: train briefly on a slice of CoNLL-2003, then tag text
into entities with character spans and look at the tag marginals."""

import rnnkit
from _data import data_dir, head, workdir

conll = data_dir() / "conll2003"
work = workdir("tag")
summary = rnnkit.train(
    "tag", out=work / "run", overwrite=True, train=conll / "train.txt",
    valid=head(conll / "valid.txt", 5_000, work / "valid.txt"), embed=50, hidden=64, char_hidden=16,
    epochs=2, threads=2,
)
print(f"validation F1 {summary['valid_f1']:.1%} after {summary['epochs_done']} epochs")

tagger = rnnkit.load(work / "run" / "model.safetensors")
texts = ["Angela Merkel met Emmanuel Macron in Paris on Monday .", "Germany beat Brazil 7-1 in Belo Horizonte ."]
for text, result in zip(texts, tagger.tag(texts)):
    print(text)
    for e in result["entities"]:
        print(f"  {e['type']:5s} {e['text']!r} chars {e['char_start']}-{e['char_end']} p={e['prob']:.2f}")
        assert text[e["char_start"]:e["char_end"]] == e["text"]
marg = tagger.trace(texts[0])["task"]
print("tags", marg["labels"])
print("marginals of the first token", marg["marginals"][0].round(2))
