"""Every verb on small models, each result compared with the CLI's for the same checkpoint,
input and seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rnnkit
from conftest import cli, last_json


def test_load_gives_each_tasks_class(models):
    assert isinstance(models["lm"], rnnkit.LanguageModel)
    assert isinstance(models["tag"], rnnkit.Tagger)
    assert isinstance(models["classify"], rnnkit.Classifier)
    assert isinstance(models["translate"], rnnkit.Translator)
    for task, m in models.items():
        assert isinstance(m, rnnkit.Model)
        assert m.task == task
        assert m.metadata["task"] == task
        assert m.config == m.metadata["model"]
        assert task in repr(m)


def test_generate_equals_the_cli(models, runs):
    lm = models["lm"]
    path = runs["lm"][0] / "model.safetensors"
    for opts in [dict(seed=3), dict(temperature=0.7, top_k=5, seed=9), dict(greedy=True), dict(top_p=0.9, seed=2)]:
        text = lm.generate("the ", max_tokens=40, **opts)
        args = ["lm", "generate", "--model", str(path), "--prompt", "the ", "--max-tokens", "40", "--json", "--threads", "1"]
        for k, v in opts.items():
            args += [f"--{k.replace('_', '-')}"] if v is True else [f"--{k.replace('_', '-')}", str(v)]
        assert text == last_json(cli(*args).stdout)["text"], opts
    # A batch is the prompts one by one; a stream is the same text piece by piece.
    batch = lm.generate(["the ", "a"], max_tokens=30, seed=5)
    assert batch == [lm.generate("the ", max_tokens=30, seed=5), lm.generate("a", max_tokens=30, seed=5)]
    pieces = list(lm.stream("the ", max_tokens=30, seed=5))
    assert "".join(pieces) == batch[0] and len(pieces) == 30
    # Breaking out of a stream stops it; the model is free for the next call.
    for i, _ in enumerate(lm.stream("the ", max_tokens=100_000)):
        if i == 3:
            break
    assert lm.generate("the ", max_tokens=5, seed=5) == batch[0][: len(lm.generate("the ", max_tokens=5, seed=5))]


def test_score(models, corpus):
    lm = models["lm"]
    text = corpus["lm"][0].read_text(encoding="utf-8")[:200]
    s = lm.score([text, "zqxj vvkw qqqq zzzz"])
    assert s.dtype == np.float64 and s.shape == (2,)
    assert s[0] < s[1]
    assert lm.score(text) == pytest.approx(s[0])


def test_score_equals_the_cli(models, runs, tmp_path):
    """One text read as one sequence: `lm eval` with one row and a window as long as it."""
    lm = models["lm"]
    text = "the cat sat on the mat and the dog ran"
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    out = cli("lm", "eval", "--model", str(runs["lm"][0] / "model.safetensors"), "--data", str(f),
              "--batch-size", "1", "--bptt", "1000", "--json", "--threads", "1").stdout
    theirs = last_json(out)
    assert lm.score(text) == pytest.approx(theirs["loss"], abs=1e-6)


def test_tag_equals_the_cli(models, runs, tmp_path):
    tagger = models["tag"]
    texts = ["Anna lives in Berlin .", "EU rejects German call to boycott British lamb .", ""]
    got = tagger.tag(texts)
    assert len(got) == 3 and got[2]["tokens"] == []
    f = tmp_path / "in.txt"
    f.write_text("\n".join(texts[:2]) + "\n", encoding="utf-8")
    out = cli("tag", "predict", "--model", str(runs["tag"][0] / "model.safetensors"), "--input", str(f),
              "--text", "--format", "json", "--threads", "1").stdout
    for mine, line in zip(got, out.strip().splitlines()):
        theirs = json.loads(line)
        assert mine["tokens"] == theirs["tokens"] and mine["tags"] == theirs["tags"]
        assert [(e["type"], e["char_start"], e["char_end"], e["text"]) for e in mine["entities"]] == [
            (e["type"], e["char_start"], e["char_end"], e["text"]) for e in theirs["entities"]
        ]
    one = tagger.tag(texts[0])
    assert one["tokens"] == got[0]["tokens"] and one["probs"].shape == (5,)
    for e in one["entities"]:
        assert texts[0][e["char_start"]:e["char_end"]] == e["text"]
    words = ["Anna", "lives", "in", "Berlin", "."]
    by_tokens = tagger.tag([words, tuple(words)])
    assert by_tokens[0]["tags"] == by_tokens[1]["tags"] == got[0]["tags"]
    # A new list each time, of the caller's tokens.
    assert by_tokens[1]["tokens"] == words and by_tokens[0]["tokens"] is not words
    by_tokens[0]["tokens"].append("x")
    assert words == ["Anna", "lives", "in", "Berlin", "."]
    bare = tagger.tag([words, words], probs=False)
    assert bare[0]["tags"] == got[0]["tags"] and bare[0]["probs"].shape == (0,)
    assert not bare[1]["probs"].flags.writeable and all(e["prob"] is None for e in bare[0]["entities"])
    assert set(t for r in got for t in r["tags"]) <= set(tagger.labels) | {"O"} | {
        p + t[2:] for t in tagger.labels for p in ("B-", "I-") if len(t) > 2
    }


def test_read_conll_then_tag_equals_the_cli(models, runs, corpus, tmp_path):
    path = corpus["tag"][0]
    tokens, tags = rnnkit.read_conll(path)
    # The same sentences as a plain reading of the columns.
    plain, sent = [], []
    for line in open(path, encoding="utf-8"):
        if line.startswith("-DOCSTART-"):
            continue
        if line.strip():
            sent.append(line.split())
        elif sent:
            plain.append(sent)
            sent = []
    if sent:
        plain.append(sent)
    assert tokens == [[c[0] for c in s] for s in plain]
    assert tags == [[c[-1] for c in s] for s in plain]
    assert all(len(a) == len(b) for a, b in zip(tokens, tags))
    assert rnnkit.read_conll(str(path), token_col=-1, tag_col=0) == (tags, tokens)
    # Tagging what it read gives the CLI's tags for the file, line for line.
    tagged = models["tag"].tag(tokens[:200], probs=False)
    head = tmp_path / "head.conll"
    head.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(a, b)) for a, b in zip(tokens[:200], tags[:200]))
                    + "\n", encoding="utf-8")
    out = cli("tag", "predict", "--model", str(runs["tag"][0] / "model.safetensors"), "--input", str(head),
              "--format", "conll", "--threads", "1").stdout
    cli_tags = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert cli_tags == [t for r in tagged for t in r["tags"]]


def test_classify_equals_the_cli(models, runs, tmp_path):
    clf = models["classify"]
    texts = ["a great film", "an awful plot with a bad end", "x"]
    labels, probs = clf.classify(texts)
    assert probs.dtype == np.float32 and probs.shape == (3, len(clf.classes))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert labels == [clf.classes[i] for i in probs.argmax(axis=1)]
    f = tmp_path / "in.txt"
    f.write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = cli("classify", "predict", "--model", str(runs["classify"][0] / "model.safetensors"),
              "--input", str(f), "--json", "--threads", "1").stdout
    for i, line in enumerate(out.strip().splitlines()):
        theirs = json.loads(line)
        assert labels[i] == theirs["label"]
        assert [float(probs[i][j]) for j in range(len(clf.classes))] == [
            pytest.approx(theirs["probs"][c], abs=1e-7) for c in clf.classes
        ]
    label, p = clf.classify(texts[0])
    assert label == labels[0] and p.shape == (len(clf.classes),)


def test_translate_equals_the_cli(models, runs, corpus, tmp_path):
    tr = models["translate"]
    src = corpus["translate"][0].read_text(encoding="utf-8").splitlines()[:5]
    path = str(runs["translate"][0] / "model.safetensors")
    f = tmp_path / "src.txt"
    f.write_text("\n".join(src) + "\n", encoding="utf-8")
    for beam in (1, 3):
        mine = tr.translate(src, beam=beam)
        theirs = cli("translate", "predict", "--model", path, "--input", str(f), "--beam", str(beam),
                     "--threads", "1").stdout.splitlines()
        assert mine == theirs
    # Unknown words replaced from the source, as the CLI's --replace-unk does.
    odd = ["Ein Xylophon Quokka Zwölftonmusik ."]
    f2 = tmp_path / "odd.txt"
    f2.write_text(odd[0] + "\n", encoding="utf-8")
    mine = tr.translate(odd, beam=1, replace_unk=True)
    theirs = cli("translate", "predict", "--model", path, "--input", str(f2), "--beam", "1",
                 "--replace-unk", "--threads", "1").stdout.splitlines()
    assert mine == theirs and "<unk>" not in mine[0]
    full = tr.translate(src[:2], beam=3, n_best=2, attention=True)
    for t in full:
        assert len(t["hypotheses"]) == 2
        for h in t["hypotheses"]:
            a = h["attention"]
            assert a.dtype == np.float32 and a.shape == (len(h["tokens"]), len(t["source_tokens"]))
            np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-4)
    assert tr.translate(src[0], beam=1) == tr.translate([src[0]], beam=1)[0]


def test_trace_shapes_and_values(models):
    lm = models["lm"]
    t = lm.trace("the cat")
    n, h = len(t["tokens"]), t["hidden"]
    assert t["cell"] == "lstm" and t["gate_names"] == ["input", "forget", "cell", "output"]
    (layer,) = t["layers"]
    assert layer["h"].shape == (n, h) and layer["c"].shape == (n, h) and layer["gates"].shape == (n, 4, h)
    # h = o * tanh(c), from the trace's own gates and cell state.
    np.testing.assert_allclose(layer["h"], layer["gates"][:, 3] * np.tanh(layer["c"]), atol=1e-6)
    task = t["task"]
    assert task["kind"] == "next_tokens" and task["next_probs"].shape == (n, 10)
    assert np.all(np.diff(task["next_probs"], axis=1) <= 0)
    # The classifier's weights, the tagger's marginals and the translator's attention.
    c = models["classify"].trace("a great film")["task"]
    assert c["kind"] == "pooling" and c["weights"].shape == (3,)
    g = models["tag"].trace("Anna lives in Berlin")["task"]
    np.testing.assert_allclose(g["marginals"].sum(axis=1), 1.0, rtol=1e-4)
    a = models["translate"].trace("Ein Hund sieht einen Mann.")
    assert a["task"]["attention"].shape == (len(a["task"]["target"]), len(a["tokens"]))
    # The bidirectional stacks have both directions.
    assert [d["reverse"] for d in models["classify"].trace("a film")["layers"]] == [False, True]
