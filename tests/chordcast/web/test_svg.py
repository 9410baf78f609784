"""`ring --svg`: nodes where the page puts them, escaped names, and parseable XML."""

from __future__ import annotations

import math
from xml.etree import ElementTree

from chordcast.results import NodeInfo, Peer
from chordcast.survey import NodeView, RingSurvey
from chordcast.web.svg import R, ring_svg

SVG = "{http://www.w3.org/2000/svg}"


def test_each_node_sits_at_its_id_clockwise_from_the_top() -> None:
    bits = 8
    ids = {0: "h:0", 64: "h:<64>&", 128: "h:128", 192: "h:192"}  # a name needing escapes
    nodes = [NodeView("up", f"{i:02x}", a, NodeInfo(Peer(f"{i:02x}", a), None, [], [], 0, 0,
                                                     bits), neighbours="ok")
             for i, a in ids.items()]
    nodes[3].state = "down"
    root = ElementTree.fromstring(ring_svg(RingSurvey(bits, nodes)).split("?>", 1)[1])
    circles = {c.attrib["data-address"]: c for c in root.iter(f"{SVG}circle")
               if "data-node-id" in c.attrib}
    assert set(circles) == set(ids.values())
    where = {a: (float(c.attrib["cx"]), float(c.attrib["cy"])) for a, c in circles.items()}
    assert math.isclose(where["h:0"][1], -R) and math.isclose(where["h:0"][0], 0, abs_tol=0.1)
    assert math.isclose(where["h:<64>&"][0], R)      # a quarter of the way: the right
    assert math.isclose(where["h:128"][1], R)        # half: the bottom
    assert circles["h:192"].attrib["data-state"] == "down"
    assert {t.text for t in root.iter(f"{SVG}text")} >= set(ids.values())
