"""Merging collapsed stacks from several workers and writing them as SVG, speedscope JSON or
collapsed text (no processes: py-spy's raw format as input)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from janus_mp.app.profile import flame_graph

WORKER_A = ("<module> (app.py:1);main (app.py:9);burn (app.py:2) 70\n"
            "<module> (app.py:1);main (app.py:9);idle (app.py:5) 30\n")
WORKER_B = ("<module> (app.py:1);main (app.py:9);burn (app.py:2) 50\n"
            "<module> (app.py:1);main (app.py:9);<lambda> (a&b.py:3) 10\n"
            "not a stack line\n")


def _merged() -> flame_graph.Stacks:
    return flame_graph.merge([flame_graph.parse_collapsed(WORKER_A),
                              flame_graph.parse_collapsed(WORKER_B)])


def test_merge_sums_the_same_stack_across_workers():
    merged = _merged()
    assert merged[("<module> (app.py:1)", "main (app.py:9)", "burn (app.py:2)")] == 120
    assert sum(merged.values()) == 160
    assert flame_graph.hottest(merged, 1) == [("burn (app.py:2)", 120)]
    assert flame_graph.parse_collapsed(flame_graph.collapsed(merged)) == merged


def test_svg_is_well_formed_and_sizes_frames_by_samples():
    document = flame_graph.svg(_merged(), "crunch <2 workers>")
    root = ET.fromstring(document)  # frame names with < and & are escaped
    titles = [el.text for el in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "burn (app.py:2) — 120 samples, 75.0%" in titles
    assert "<lambda> (a&b.py:3) — 10 samples, 6.2%" in titles
    widths = {el.text.split(" — ")[0]: float(rect.get("width"))
              for group in root.iter("{http://www.w3.org/2000/svg}g")
              for el, rect in [(group[0], group[1])]}
    assert widths["burn (app.py:2)"] == 120 / 160 * widths["all"]


def test_deep_stacks_do_not_recurse():
    deep = flame_graph.parse_collapsed(";".join(f"f{i} (m.py:{i})" for i in range(3000))
                                       + " 5\n")
    assert "f2999 (m.py:2999)" in flame_graph.svg(deep, "deep")


def test_speedscope_has_all_workers_then_each():
    per_worker = {"pid 1": flame_graph.parse_collapsed(WORKER_A),
                  "pid 2": flame_graph.parse_collapsed(WORKER_B)}
    data = json.loads(flame_graph.speedscope(per_worker, "crunch"))
    assert [p["name"] for p in data["profiles"]] == ["all workers", "pid 1", "pid 2"]
    frames = data["shared"]["frames"]
    assert {"name": "burn", "file": "app.py", "line": 2} in frames
    merged = data["profiles"][0]
    burn = frames.index({"name": "burn", "file": "app.py", "line": 2})
    assert sum(w for s, w in zip(merged["samples"], merged["weights"], strict=True)
               if s[-1] == burn) == 120
    assert merged["endValue"] == 160


def test_stacks_start_at_the_workers_entry():
    forked = flame_graph.parse_collapsed(
        "<module> (janus-mp:1);run (janus_mp/app/cli.py:272);"
        "worker_main (janus_mp/runtime/worker.py:94);work (app.py:3) 7\n"
        "<module> (janus-mp:1);run (janus_mp/app/cli.py:272);"
        "worker_main (janus_mp/runtime/worker.py:94);idle (app.py:9) 3\n"
        "Thread._bootstrap (threading.py:1002);_bridge (janus_mp/runtime/worker.py:281) 2\n")
    trimmed = flame_graph.from_worker_entry(forked)
    assert trimmed == {("worker_main (janus_mp/runtime/worker.py:94)", "work (app.py:3)"): 7,
                       ("worker_main (janus_mp/runtime/worker.py:94)", "idle (app.py:9)"): 3,
                       ("Thread._bootstrap (threading.py:1002)",
                        "_bridge (janus_mp/runtime/worker.py:281)"): 2}
