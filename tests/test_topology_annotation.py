"""The topology JSON annotation: compact form and validation on read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from topology.annotation import TopologyJSONError, from_dict, from_json, to_dict, to_json
from topology.model import GPU, NIC, NodeTopology
from topology.presets import preset


def test_compact_versioned_form() -> None:
    topo = preset("dgx1-v100")
    text = to_json(topo)
    assert " " not in text.replace("Tesla V100", "").replace("SXM2-32GB", "")
    data = json.loads(text)
    assert data["v"] == 1 and data["name"] == "dgx1-v100"
    assert len(data["gpus"]) == 8 and len(data["links"]) == 28
    assert data["links"][:7] == ["NV1", "NV1", "NV2", "NV2", "SYS", "SYS", "SYS"]
    assert data["gpus"][0] == {
        "model": "Tesla V100-SXM2-32GB", "memory_mib": 32768, "numa": 0, "cpu": "0-19,40-59"
    }  # fmt: skip
    assert data["nics"][0] == {
        "name": "mlx5_0", "links": ["PIX", "PIX", "PHB", "PHB", "SYS", "SYS", "SYS", "SYS"],
        "numa": 0,
    }  # fmt: skip


def test_all_gpu_fields_round_trip() -> None:
    topo = NodeTopology(
        gpus=(
            GPU(0, "NVIDIA A100-SXM4-80GB", "GPU-abc", 81920, None, "00000000:07:00.0", ""),
            GPU(1, "NVIDIA A100-SXM4-80GB", "GPU-def", 81920, 1, "00000000:0F:00.0", "1-2"),
        ),
        links=(("X", "NV12"), ("NV12", "X")),
        nics=(NIC("mlx5_0", ("PXB", "SYS")),),
    )
    assert from_json(to_json(topo)) == topo
    assert from_json(to_json(topo).encode()) == topo


def test_full_matrix_accepted() -> None:
    doc = {"v": 1, "gpus": [{"model": "m", "memory_mib": 1}] * 2,
           "links": [["X", "pix"], ["PIX", "X"]]}  # fmt: skip
    assert from_dict(doc).links == (("X", "PIX"), ("PIX", "X"))


def _doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "v": 1,
        "gpus": [{"model": "NVIDIA H100 80GB HBM3", "memory_mib": 81920, "numa": 0}] * 3,
        "links": ["NV18", "NV18", "NV18"],
        "nics": [{"name": "mlx5_0", "links": ["PIX", "PXB", "SYS"]}],
    }
    doc.update(over)
    return doc


def _gpu(**over: Any) -> list[dict[str, Any]]:
    g = {"model": "NVIDIA H100 80GB HBM3", "memory_mib": 81920}
    g.update(over)
    return [g, dict(g), dict(g)]


BAD: list[tuple[str, Any, str, object]] = [
    ("unknown version", _doc(v=2), "v", 2),
    ("version as bool", _doc(v=True), "v", True),
    ("version as string", _doc(v="1"), "v", "1"),
    ("wrong matrix size", _doc(links=["NV18", "NV18"]), "links", "2 entries"),
    ("wrong full matrix rows", _doc(links=[["X", "NV1"], ["NV1", "X"]]), "links", "2 rows"),
    ("wrong full matrix row", _doc(links=[["X", "NV1", "NV1"], ["NV1", "X"], ["NV1", "NV1", "X"]]),
     "links[1]", "2 entries"),
    ("asymmetric", _doc(links=[["X", "NV1", "SYS"], ["NV2", "X", "SYS"], ["SYS", "SYS", "X"]]),
     "links[1][0]", "NV2"),
    ("unknown link kind", _doc(links=["NV18", "FAST", "NV18"]), "links[1]", "FAST"),
    ("X off the diagonal", _doc(links=["NV18", "X", "NV18"]), "links[1]", "X"),
    ("link not a string", _doc(links=["NV18", 7, "NV18"]), "links[1]", 7),
    ("missing links", {"v": 1, "gpus": _gpu()}, "links", None),
    ("missing version", {"gpus": _gpu(), "links": []}, "v", None),
    ("missing gpus", {"v": 1, "links": []}, "gpus", None),
    ("empty gpus", _doc(gpus=[]), "gpus", []),
    ("missing gpu model", _doc(gpus=[{"memory_mib": 1}] * 3), "gpus[0].model", None),
    ("negative memory", _doc(gpus=_gpu(memory_mib=-5)), "gpus[0].memory_mib", -5),
    ("memory as string", _doc(gpus=_gpu(memory_mib="80G")), "gpus[0].memory_mib", "80G"),
    ("numa as string", _doc(gpus=_gpu(numa="0")), "gpus[0].numa", "0"),
    ("unknown gpu field", _doc(gpus=_gpu(colour="green")), "gpus[0].colour", "green"),
    ("unknown top field", _doc(extra=1), "extra", 1),
    ("gpu not an object", _doc(gpus=["GPU0", "GPU1", "GPU2"]), "gpus[0]", "GPU0"),
    ("nic links short", _doc(nics=[{"name": "ib0", "links": ["PIX"]}]), "nics[0].links",
     ["PIX"]),
    ("nic unknown link", _doc(nics=[{"name": "ib0", "links": ["PIX", "PIX", "??"]}]),
     "nics[0].links[2]", "??"),
    ("nic missing name", _doc(nics=[{"links": ["PIX", "PIX", "PIX"]}]), "nics[0].name", None),
    ("nic name with space", _doc(nics=[{"name": "my nic", "links": ["PIX"] * 3}]),
     "nics[0].name", "my nic"),
    ("duplicate nic", _doc(nics=[{"name": "a", "links": ["PIX"] * 3}] * 2), "nics[1].name", "a"),
    ("not an object", [1, 2, 3], "", [1, 2, 3]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "field", "value"), [pytest.param(d, f, v, id=i) for i, d, f, v in BAD]
)
def test_validation_errors(doc: Any, field: str, value: object) -> None:
    with pytest.raises(TopologyJSONError) as info:
        from_json(json.dumps(doc))
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.field, err.value) == (field, value), str(err)
    assert field in str(err) and repr(value)[:20] in str(err)


@pytest.mark.parametrize("text", ["", "{", "not json", "{'v': 1}", b"\xff\xfe"])
def test_not_json(text: str | bytes) -> None:
    with pytest.raises(TopologyJSONError) as info:
        from_json(text)
    assert info.value.field == "(document)" and "not JSON" in str(info.value)


def test_to_dict_matches_to_json() -> None:
    topo = preset("dgx-a100")
    assert json.loads(to_json(topo)) == to_dict(topo)
