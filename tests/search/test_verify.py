"""The front written to models/ is timed whole (lts.search.verify), its composed figures kept beside."""

from __future__ import annotations

import json

from searchrun import DETERMINISTIC, rows, search, tiny_space

from lts.search.record import RunRecord
from lts.search.verify import VERIFIED, read_verified, whole_front

LATENCY = "non_embedding_params,onnx_latency_s"
ARGS = ("--generations", 2, "--population", 6, "--seq-len", 32, "--threads", 1, "--objectives", LATENCY)


def front_by_hand(figures: dict[str, tuple[float, float]]) -> set[str]:
    """The archids whose (parameters, latency) no other beats: at least as many parameters and no slower, better
    in one."""
    def beats(a, b):
        return a[0] >= b[0] and a[1] <= b[1] and a != b

    return {a for a, f in figures.items() if not any(beats(g, f) for g in figures.values())}


def test_the_front_written_is_timed_whole_and_taken_with_those_figures(tmp_path):
    r = search(tmp_path, "--config", tiny_space(tmp_path), *ARGS, check=True)
    run = tmp_path / "run"
    whole = read_verified(run)
    members = {p.name for p in (tmp_path / "models").iterdir() if p.is_dir()}
    assert members and members <= set(whole)  # every member was timed whole
    assert all(w.ok and "full" in w.measurement.get("latency") for w in whole.values())
    for archid in members:
        metrics = json.loads((tmp_path / "models" / archid / "metrics.json").read_text())
        assert metrics["onnx_latency_s"] == whole[archid]["onnx_latency_s"]  # what models/ says is the whole figure
        assert set(metrics["composed"]) == {"onnx_latency_s", "onnx_latency_cv", "onnx_latency_units"}
        assert metrics["composed"]["onnx_latency_s"] > 0 and metrics["composed"]["onnx_latency_s"] != \
            metrics["onnx_latency_s"]  # two measurements of a float never agree to the last bit
    # the search's front, taken again among its members with their whole figures (fronts taken by hand)
    composed = {a: r for a, r in RunRecord(run).load().items() if r.ok}
    searched = front_by_hand({a: (x["non_embedding_params"], x["onnx_latency_s"]) for a, x in composed.items()})
    assert set(whole) == searched  # only the search's members were timed
    expected = front_by_hand({a: (composed[a]["non_embedding_params"], whole[a]["onnx_latency_s"]) for a in searched})
    assert members == expected
    assert {x.archid for x in whole_front(list(composed.values()), whole, LATENCY.split(","))[1]} == members
    assert {row["archid"] for row in rows(run / "pareto.csv")} == members
    assert f"whole       : the front's {len(members)} members measured whole" in r.stdout

    again = search(tmp_path, "--config", tiny_space(tmp_path), *ARGS, name="again", check=True)
    assert "from cache" in again.stdout
    lines = [json.loads(line) for line in (tmp_path / "again" / VERIFIED).read_text().splitlines()]
    assert lines and all(line["cached"] for line in lines)  # a whole timing is stored: never made twice
    assert {p.name for p in (tmp_path / "models").iterdir() if p.is_dir()} == members


def test_a_search_that_times_whole_or_not_at_all_times_nothing_again(tmp_path):
    for name, args in (("full", (*ARGS, "--latency-mode", "full")), ("static", ("--objectives", DETERMINISTIC))):
        search(tmp_path, "--config", tiny_space(tmp_path), *args, name=name, check=True)
        assert not (tmp_path / name / VERIFIED).exists()
        folders = [p for p in (tmp_path / "models").iterdir() if p.is_dir()]
        assert folders and all("composed" not in json.loads((f / "metrics.json").read_text()) for f in folders)
