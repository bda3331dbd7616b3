"""Tune the scene-image threshold on the ChatHaruhi Haruhi frames.

    ROLECAST_CORPUS=../shared/corpus/chatharuhi python benchmarks/tune_scene_images.py

Positives: each frame's file name, a shortened or repunctuated quote of the full subtitle line
(from ``text_image_dict.txt``) that the frame's canon line holds, must call up its own frame.
Negatives: every other line Haruhi speaks in the canon must call up no frame. Prints recall
and false-positive rate per threshold and the lowest threshold with under 1% false positives.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def main() -> int:
    root = os.environ.get("ROLECAST_CORPUS")
    if not root:
        print("set ROLECAST_CORPUS to the ChatHaruhi corpus folder", file=sys.stderr)
        return 2
    os.environ.setdefault("ROLECAST_HOME", tempfile.mkdtemp(prefix="rolecast-tune-"))
    from rolecast.formats.chatharuhi import FRAMES_SCENE, import_story_folder
    from rolecast.retrieval.images import THRESHOLD, SceneImages
    from rolecast.retrieval.index import load_index

    folder = Path(root) / "characters" / "haruhi"
    c = import_story_folder(folder).character
    images = SceneImages(load_index(c, "use"))
    # each frame's line holds the full subtitle (text_image_dict.txt); the frame's file name
    # is a shortened or repunctuated quote of it, as a reply that echoes the line would be
    positives = [(Path(ln.image or "").stem.strip(), ln.image) for ln, _ in images.lines]
    negatives = sorted(
        {
            ln.text
            for s in c.scenes
            if s.id != FRAMES_SCENE
            for ln in s.lines
            if c.is_self(ln.speaker) and len(ln.text) >= 4
        }
    )
    pos = [(images.scores(t), want) for t, want in positives]
    neg = np.array([images.scores(t).max() for t in negatives])
    print(f"# scene-image threshold ({len(positives)} positives, {len(negatives)} negatives)\n")
    print("| threshold | recall (right frame) | false positives |\n|---|---|---|")
    best = None
    for th in np.arange(0.50, 0.96, 0.05):
        hit = sum(
            1 for s, want in pos if s.max() >= th and images.lines[int(s.argmax())][0].image == want
        )
        fp = float((neg >= th).mean())
        print(f"| {th:.2f} | {hit}/{len(pos)} | {fp:.2%} |")
        if fp < 0.01 and best is None:
            best = th
    print(f"\nlowest threshold with < 1% false positives: {best:.2f}; in use: {THRESHOLD:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
