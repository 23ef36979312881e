"""Tagging a corpus on a distributed engine: the CoNLL-2003 test sentences in partitions on a
dask.distributed LocalCluster with two workers, each worker using the pickled tagger, give the
same entities as one process.

A tagger is needed: the one tag.py trains (RNNKIT_EXAMPLES_DIR/tag/run), or --model PATH.
"""

import argparse

from dask.distributed import Client, LocalCluster

import rnnkit
from _data import data_dir, workdir


def entities(tagged):
    return [[(e["type"], e["start"], e["end"]) for e in t["entities"]] for t in tagged]


def tag_part(model, part):
    return entities(model.tag(part))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    model = args.model or str(workdir("tag") / "run" / "model.safetensors")
    tagger = rnnkit.load(model)

    sentences, _tags = rnnkit.read_conll(data_dir() / "conll2003" / "test.txt")
    print(f"{len(sentences)} sentences")

    one_process = entities(tagger.tag(sentences))

    parts = [sentences[i : i + 500] for i in range(0, len(sentences), 500)]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
        remote = client.scatter(tagger, broadcast=True)  # pickled once, rebuilt on each worker
        futures = [client.submit(tag_part, remote, p) for p in parts]
        distributed = [e for part in client.gather(futures) for e in part]

    n = sum(len(e) for e in one_process)
    print(f"{n} entities in one process; the two workers agree: {distributed == one_process}")
    assert distributed == one_process


if __name__ == "__main__":  # the workers are processes that import this file
    main()
