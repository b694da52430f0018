"""Slices drawn across sources in proportion: exact counts, seeded, verbatim, spread over each file."""

import gzip
import json

import pytest

from growlm.data.slices import draw_documents, proportional_counts, split_account
from growlm.errors import DataError


def test_proportional_counts_are_hamilton_apportionment():
    # the shared corpus (4,985 documents), 480 drawn: shares 56.33, 18.97, 81.36, 323.33; the two largest
    # remainders (sotu .97, pydocs .36) get the two documents left after the floors
    assert proportional_counts([585, 197, 845, 3358], 480) == [56, 19, 82, 323]
    assert proportional_counts([1, 1, 1], 2) == [1, 1, 0]  # ties to the earlier group
    assert proportional_counts([3, 0, 7], 10) == [3, 0, 7]
    for sizes, total in (([5, 9, 14, 2], 17), ([100, 1], 50), ([7], 3)):
        counts = proportional_counts(sizes, total)
        assert sum(counts) == total
        assert all(abs(c - total * s / sum(sizes)) < 1 for c, s in zip(counts, sizes, strict=True))
    with pytest.raises(DataError, match="cannot draw 5 documents from 3"):
        proportional_counts([1, 2], 5)


def test_draw_is_seeded_verbatim_and_spread(tmp_path):
    files = []
    for name, n in (("big", 300), ("small", 60)):
        path = tmp_path / f"{name}.jsonl.gz"
        with gzip.open(path, "wt") as f:
            for i in range(n):
                f.write(json.dumps({"id": i, "source": name, "text": f"{name} document {i}"}) + "\n")
        files.append(path)
    account = draw_documents(files, 36, tmp_path / "a", seed=3)
    assert {k: v["documents"] for k, v in account.items()} == {"big": 30, "small": 6}
    rows = [json.loads(line) for line in (tmp_path / "a" / "big.jsonl").read_text().splitlines()]
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == 30 and ids == sorted(ids) and max(ids) > 150  # not the first 30
    assert all(r["text"] == f"big document {r['id']}" for r in rows)
    assert account["big"]["characters"] == sum(len(r["text"]) for r in rows)
    draw_documents(files, 36, tmp_path / "b", seed=3)
    assert (tmp_path / "a" / "big.jsonl").read_bytes() == (tmp_path / "b" / "big.jsonl").read_bytes()
    draw_documents(files, 36, tmp_path / "c", seed=4)
    assert (tmp_path / "a" / "big.jsonl").read_bytes() != (tmp_path / "c" / "big.jsonl").read_bytes()
    assert split_account(files)["small"] == {"documents": 60, "characters": sum(len(f"small document {i}")
                                                                               for i in range(60))}
