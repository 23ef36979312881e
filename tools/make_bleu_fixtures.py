#!/usr/bin/env python3
"""Writes tests/fixtures/sacrebleu.json: sacreBLEU's corpus BLEU (default: 13a, exp smoothing;
and --lowercase) and chrF (default; and lowercased) on generated hypothesis/reference sets in
several scripts, with numbers, punctuation, HTML entities and empty lines.

Needs sacrebleu (pip install sacrebleu); CI never runs this script, it runs the Rust test
that reads its output. Regenerate with:  python3 tools/make_bleu_fixtures.py tests/fixtures
"""
import json, os, random, sys

import sacrebleu

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
rng = random.Random(7)
VOCAB = {
    "en": "the a cat sat on mat Dog runs fast . , ! ? ( ) - 3.5 1,000 2-3 &amp; &quot;hi&quot; U.S. don't".split(),
    "de": "Der Hund läuft schnell über die Straße . , ! Ärger Größe 12,5 z.B. „Zitat“ –".split(),
    "ru": "Кошка сидит на коврике . , ! Москва — столица России 2024 г. «ёлка»".split(),
    "el": "Ο σκύλος τρέχει γρήγορα ΟΔΟΣ ΣΟΦΙΑ . , ;".split(),
    "zh": "我们 今天 去 北京 。 ， 天气 很 好 ！".split(),
}


def sentence(words, n):
    return " ".join(rng.choice(words) for _ in range(n))


cases = []
for case in range(10):
    lang = list(VOCAB)[case % len(VOCAB)]
    words = VOCAB[lang]
    refs, hyps = [], []
    for _ in range(rng.randint(1, 25)):
        r = sentence(words, rng.randint(0 if case == 9 else 1, 18))
        toks = r.split()
        h = " ".join(t if rng.random() < 0.7 else rng.choice(words) for t in toks if rng.random() < 0.9)
        if rng.random() < 0.2:
            h += " " + sentence(words, 3)
        refs.append(r)
        hyps.append(h)
    b = sacrebleu.corpus_bleu(hyps, [refs])
    bl = sacrebleu.corpus_bleu(hyps, [refs], lowercase=True)
    c = sacrebleu.corpus_chrf(hyps, [refs])
    cl = sacrebleu.CHRF(lowercase=True).corpus_score(hyps, [refs])
    cases.append({
        "lang": lang, "hyps": hyps, "refs": refs,
        "bleu": b.score, "precisions": b.precisions, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len,
        "bleu_lc": bl.score, "chrf": c.score, "chrf_lc": cl.score,
    })
# Orders with no match at all (shuffled or very short hypotheses) exercise the smoothing.
for case, n in [(10, 4), (11, 2), (12, 6)]:
    words = VOCAB["en"]
    refs = [sentence(words, n) for _ in range(3)]
    hyps = [" ".join(rng.sample(r.split(), len(r.split()))) for r in refs]
    b = sacrebleu.corpus_bleu(hyps, [refs])
    cases.append({
        "lang": "en-shuffled", "hyps": hyps, "refs": refs,
        "bleu": b.score, "precisions": b.precisions, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len,
        "bleu_lc": sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        "chrf_lc": sacrebleu.CHRF(lowercase=True).corpus_score(hyps, [refs]).score,
    })
tok = sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()
samples = ["Hello, world!", "It costs $3.50 (or 3,50 €).", "2-3 mice &amp; a cat", "U.S.A. e.g. x--y",
           "Ёлка, «ёж» — да!", "z.B. 12,5%", "a.b,c", "[x]{y}<z>", "我们。北京！"]
json.dump({"sacrebleu": sacrebleu.__version__, "cases": cases,
           "tokenize_13a": [[s, tok(s)] for s in samples]},
          open(os.path.join(out, "sacrebleu.json"), "w"), ensure_ascii=False)
print(f"{len(cases)} cases")
