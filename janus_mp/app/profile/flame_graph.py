"""Collapsed stacks (``frame;frame;frame COUNT`` lines, py-spy's raw format) merged across
workers and written as a flame graph: SVG, speedscope JSON, or the merged collapsed text.

Pure: text in, text out. The SVG is the classic layout — the root at the bottom, each frame as
wide as the samples under it, one row per stack depth — with a tooltip per frame; no script, so
it shows the same in a browser, an image viewer and a README.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

Stacks = Counter[tuple[str, ...]]

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")


def parse_collapsed(text: str) -> Stacks:
    """Stacks and their sample counts; lines that are not ``STACK COUNT`` are skipped."""
    stacks: Stacks = Counter()
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


#: A forked worker's stacks begin with the supervisor's own frames, from `janus-mp run` down
#: to the fork; the worker's life starts at this frame.
WORKER_ENTRY = "worker_main (janus_mp/runtime/worker.py:"


def from_worker_entry(stacks: Stacks) -> Stacks:
    """Each stack from the worker's entry frame on (stacks without one are kept whole): the
    frames above it are the supervisor's path to the fork, the same in every sample."""
    trimmed: Stacks = Counter()
    for stack, count in stacks.items():
        start = next((i for i, frame in enumerate(stack) if frame.startswith(WORKER_ENTRY)), 0)
        trimmed[stack[start:]] += count
    return trimmed


def merge(per_worker: Iterable[Stacks]) -> Stacks:
    merged: Stacks = Counter()
    for stacks in per_worker:
        merged.update(stacks)
    return merged


def collapsed(stacks: Stacks) -> str:
    return "".join(f"{';'.join(stack)} {count}\n"
                   for stack, count in sorted(stacks.items()))


def hottest(stacks: Stacks, limit: int = 5) -> list[tuple[str, int]]:
    """The frames most samples were in at the top of the stack (self time)."""
    leaves: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack:
            leaves[stack[-1]] += count
    return leaves.most_common(limit)


def speedscope(per_worker: Mapping[str, Stacks], title: str) -> str:
    """speedscope's file format: one sampled profile for all workers, then one per worker."""
    frames: dict[str, int] = {}

    def profile(name: str, stacks: Stacks) -> dict[str, object]:
        samples = [[frames.setdefault(frame, len(frames)) for frame in stack]
                   for stack in stacks]
        weights = list(stacks.values())
        return {"type": "sampled", "name": name, "unit": "none", "startValue": 0,
                "endValue": sum(weights), "samples": samples, "weights": weights}

    profiles = [profile("all workers", merge(per_worker.values()))]
    profiles += [profile(name, stacks) for name, stacks in per_worker.items()]
    shared = []
    for frame in frames:
        match = _FRAME.match(frame)
        shared.append({"name": match["name"], "file": match["file"], "line": int(match["line"])}
                      if match else {"name": frame})
    return json.dumps({"$schema": "https://www.speedscope.app/file-format-schema.json",
                       "name": title, "exporter": "janus-mp", "activeProfileIndex": 0,
                       "shared": {"frames": shared}, "profiles": profiles})


@dataclass
class _Node:
    name: str
    value: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


WIDTH = 1200
ROW = 17
_MARGIN = 10
_CHAR = 6.6  # an average glyph of 11px monospace, to cut labels that would not fit


def svg(stacks: Stacks, title: str) -> str:
    """A flame graph of ``stacks`` as a self-contained SVG."""
    root = _Node("all")
    for stack, count in stacks.items():
        root.value += count
        node = root
        for frame in stack:
            node = node.children.setdefault(frame, _Node(frame))
            node.value += count
    depth = _depth(root)
    height = (depth + 1) * ROW + 3 * _MARGIN + 16
    scale = (WIDTH - 2 * _MARGIN) / max(root.value, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" font-family="monospace" font-size="11">',
             f'<rect width="{WIDTH}" height="{height}" fill="#fdfdf6"/>',
             f'<text x="{WIDTH / 2}" y="{_MARGIN + 12}" text-anchor="middle" '
             f'font-size="14">{escape(title)}</text>']
    bottom = height - _MARGIN - ROW
    pending = [(root, float(_MARGIN), 0)]
    while pending:  # no recursion: a deep recursion in the profiled code is no problem here
        node, x, level = pending.pop()
        width = node.value * scale
        if width < 0.3:
            continue
        y = bottom - level * ROW
        share = 100.0 * node.value / max(root.value, 1)
        label = node.name if level else f"all ({root.value} samples)"
        parts.append(f'<g><title>{escape(node.name)} — {node.value} samples, {share:.1f}%'
                     f'</title><rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{ROW - 1}" '
                     f'fill={quoteattr(_colour(node.name))} rx="2"/>')
        fits = int((width - 6) / _CHAR)
        if fits >= 3:
            text = label if len(label) <= fits else label[:fits - 2] + ".."
            parts.append(f'<text x="{x + 3:.1f}" y="{y + ROW - 5}">{escape(text)}</text>')
        parts.append("</g>")
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            pending.append((child, child_x, level + 1))
            child_x += child.value * scale
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _depth(root: _Node) -> int:
    deepest, pending = 0, [(root, 0)]
    while pending:
        node, level = pending.pop()
        deepest = max(deepest, level)
        pending.extend((child, level + 1) for child in node.children.values())
    return deepest


def _colour(name: str) -> str:
    """Warm colours, the same frame always the same one (a hash, not random)."""
    digest = hashlib.blake2b(name.encode(), digest_size=2).digest()
    hue = 0.0 + digest[0] / 255 * 0.12
    red, green, blue = colorsys.hls_to_rgb(hue, 0.62 + digest[1] / 255 * 0.1, 0.85)
    return f"#{int(red * 255):02x}{int(green * 255):02x}{int(blue * 255):02x}"
