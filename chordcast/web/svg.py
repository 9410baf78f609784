"""`chordcast ring --svg FILE`: the ring as the live view draws it, as a standalone SVG file.

The same geometry as the page (chordcast/web/page.html): a node sits at its id's fraction of
the id space, clockwise from the top; the first node's successor list and fingers are drawn
as chords bent toward the centre. Built with ElementTree, so names are escaped.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from chordcast.survey import RingSurvey

R = 440.0
LABELS_UP_TO = 40  # as on the page
VIEWBOX = "-620 -560 1240 1120"  # as on the page
DASH = {"finger": "none", "successor": "6 4"}
COLOURS = {"up": "#4cc38a", "down": "#e5484d", "unwell": "#f5a524", "finger": "#5b9cf5",
           "successor": "#4cc38a", "rim": "#2c3848", "text": "#dfe6ee", "bg": "#10141a"}


def angle(id_hex: str, id_bits: int) -> float:
    return 2 * math.pi * (int(id_hex, 16) / (1 << id_bits)) - math.pi / 2


def point(id_hex: str, id_bits: int, r: float = R) -> tuple[float, float]:
    a = angle(id_hex, id_bits)
    return r * math.cos(a), r * math.sin(a)


def ring_svg(s: RingSurvey) -> str:
    # Wider than the circle: names beside the nodes at 3 and 9 o'clock need the room.
    svg = ET.Element("svg", xmlns="http://www.w3.org/2000/svg", viewBox=VIEWBOX,
                     width="1240", height="1120")
    ET.SubElement(svg, "rect", x="-620", y="-560", width="1240", height="1120",
                  fill=COLOURS["bg"])
    ET.SubElement(svg, "circle", r=f"{R:g}", fill="none", stroke=COLOURS["rim"])
    h = s.health()
    ET.SubElement(svg, "text", {"text-anchor": "middle", "y": "6", "fill": COLOURS["text"],
                                "font-family": "sans-serif", "font-size": "18"}
                  ).text = f"{h['up']}/{h['nodes']} up"
    first = s.nodes[0] if s.nodes else None
    if first is not None and first.info is not None:
        for kind, peers in (("finger", first.info.fingers),
                            ("successor", first.info.successors)):
            for p in peers:
                if p.id != first.id:
                    ET.SubElement(svg, "path", {"d": _chord(first.id, p.id, s.id_bits),
                                                "fill": "none", "stroke": COLOURS[kind],
                                                "stroke-dasharray": DASH[kind],
                                                "class": f"chord {kind}"})
    radius = max(2.5, min(12.0, 1400 / max(1, len(s.nodes))))
    for n in s.nodes:
        x, y = point(n.id, s.id_bits)
        colour = COLOURS["down"] if n.state != "up" else (
            COLOURS["up"] if n.neighbours == "ok" else COLOURS["unwell"])
        c = ET.SubElement(svg, "circle", {"cx": f"{x:.1f}", "cy": f"{y:.1f}",
                                          "r": f"{radius:.1f}", "fill": colour,
                                          "data-node-id": n.id, "data-address": n.address,
                                          "data-state": n.state})
        ET.SubElement(c, "title").text = f"{n.address} {n.id} {n.state}"
        if len(s.nodes) <= LABELS_UP_TO:
            lx, ly = point(n.id, s.id_bits, R + 22)
            cos = math.cos(angle(n.id, s.id_bits))
            anchor = "start" if cos > 0.3 else ("end" if cos < -0.3 else "middle")
            ET.SubElement(svg, "text", {"x": f"{lx:.1f}", "y": f"{ly + 4:.1f}",
                                        "text-anchor": anchor, "fill": COLOURS["text"],
                                        "font-family": "sans-serif", "font-size": "14"}
                          ).text = n.address
    legend = [("finger", f"{first.address if first else ''}'s fingers"),
              ("successor", "its successor list"), ("up", "node up"),
              ("unwell", "wrong neighbours"), ("down", "down")]
    for k, (kind, text) in enumerate(legend):
        y = 480 + 18 * (k - 2)
        ET.SubElement(svg, "rect", x="-600", y=f"{y - 9}", width="14", height="10",
                      fill=COLOURS[kind])
        ET.SubElement(svg, "text", {"x": "-580", "y": f"{y}", "fill": COLOURS["text"],
                                    "font-family": "sans-serif", "font-size": "13"}
                      ).text = text
    return ET.tostring(svg, encoding="unicode", xml_declaration=True) + "\n"


def _chord(a: str, b: str, bits: int) -> str:
    (x1, y1), (x2, y2) = point(a, bits), point(b, bits)
    return f"M{x1:.1f},{y1:.1f} Q0,0 {x2:.1f},{y2:.1f}"
