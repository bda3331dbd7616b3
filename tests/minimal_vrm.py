"""A minimal VRM 1.0 model written by the tests: the humanoid's required bones as bare nodes,
and one face mesh (a quad) whose morph targets are the mouth's aa ih ou ee oh and blink,
bound to VRM's preset expressions. Enough for three-vrm to load it and move its mouth."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BONES = [  # name, parent, offset (metres)
    ("hips", None, (0, 0.9, 0)),
    ("spine", "hips", (0, 0.1, 0)),
    ("chest", "spine", (0, 0.15, 0)),
    ("neck", "chest", (0, 0.2, 0)),
    ("head", "neck", (0, 0.1, 0)),
    ("leftUpperLeg", "hips", (0.1, -0.05, 0)),
    ("leftLowerLeg", "leftUpperLeg", (0, -0.4, 0)),
    ("leftFoot", "leftLowerLeg", (0, -0.4, 0)),
    ("rightUpperLeg", "hips", (-0.1, -0.05, 0)),
    ("rightLowerLeg", "rightUpperLeg", (0, -0.4, 0)),
    ("rightFoot", "rightLowerLeg", (0, -0.4, 0)),
    ("leftUpperArm", "chest", (0.2, 0.15, 0)),
    ("leftLowerArm", "leftUpperArm", (0.25, 0, 0)),
    ("leftHand", "leftLowerArm", (0.25, 0, 0)),
    ("rightUpperArm", "chest", (-0.2, 0.15, 0)),
    ("rightLowerArm", "rightUpperArm", (-0.25, 0, 0)),
    ("rightHand", "rightLowerArm", (-0.25, 0, 0)),
]
MORPHS = ["aa", "ih", "ou", "ee", "oh", "blink"]


def _floats(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def minimal_vrm(path: Path) -> Path:
    quad = [-0.1, -0.1, 0.0, 0.1, -0.1, 0.0, 0.1, 0.1, 0.0, -0.1, 0.1, 0.0]
    blob = bytearray(_floats(quad))
    views = [{"buffer": 0, "byteOffset": 0, "byteLength": 48}]
    accessors = [
        {
            "bufferView": 0,
            "componentType": 5126,
            "count": 4,
            "type": "VEC3",
            "min": [-0.1, -0.1, 0.0],
            "max": [0.1, 0.1, 0.0],
        }
    ]
    for k in range(len(MORPHS)):  # each target moves the bottom edge down a little more
        delta = [0.0] * 12
        delta[1] = delta[4] = -0.02 * (k + 1)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": 48})
        blob += _floats(delta)
        accessors.append(
            {
                "bufferView": len(views) - 1,
                "componentType": 5126,
                "count": 4,
                "type": "VEC3",
                "min": [0.0, min(delta), 0.0],
                "max": [0.0, 0.0, 0.0],
            }
        )
    index = struct.pack("<6H", 0, 1, 2, 0, 2, 3)
    views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(index)})
    blob += index + b"\0\0"
    accessors.append(
        {"bufferView": len(views) - 1, "componentType": 5123, "count": 6, "type": "SCALAR"}
    )
    names = [b[0] for b in BONES]
    nodes: list[dict[str, object]] = [
        {"name": name, "translation": list(offset)} for name, _, offset in BONES
    ]
    for i, (_, parent, _) in enumerate(BONES):
        if parent is not None:
            nodes[names.index(parent)].setdefault("children", []).append(i)  # type: ignore[union-attr]
    face = len(nodes)
    nodes.append({"name": "face", "mesh": 0, "translation": [0, 0.05, 0.1]})
    nodes[names.index("head")].setdefault("children", []).append(face)  # type: ignore[union-attr]
    gltf = {
        "asset": {"version": "2.0", "generator": "rolecast tests"},
        "extensionsUsed": ["VRMC_vrm"],
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": nodes,
        "meshes": [
            {
                "name": "face",
                "primitives": [
                    {
                        "attributes": {"POSITION": 0},
                        "indices": len(accessors) - 1,
                        "targets": [{"POSITION": k + 1} for k in range(len(MORPHS))],
                    }
                ],
                "weights": [0.0] * len(MORPHS),
                "extras": {"targetNames": MORPHS},
            }
        ],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
        "extensions": {
            "VRMC_vrm": {
                "specVersion": "1.0",
                "meta": {
                    "name": "rolecast test face",
                    "version": "1",
                    "authors": ["rolecast tests"],
                    "licenseUrl": "https://vrm.dev/licenses/1.0/",
                    "avatarPermission": "everyone",
                    "commercialUsage": "corporation",
                    "allowRedistribution": True,
                    "modification": "allowModificationRedistribution",
                },
                "humanoid": {"humanBones": {name: {"node": i} for i, name in enumerate(names)}},
                "expressions": {
                    "preset": {
                        m: {"morphTargetBinds": [{"node": face, "index": k, "weight": 1.0}]}
                        for k, m in enumerate(MORPHS)
                    }
                },
            }
        },
    }
    text = json.dumps(gltf).encode("utf-8")
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    body = (
        struct.pack("<I4s", len(text), b"JSON")
        + text
        + struct.pack("<I4s", len(blob), b"BIN\0")
        + bytes(blob)
    )
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return path
