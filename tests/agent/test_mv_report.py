"""The auditor's HTML report: parses, has every section, every chart carries its data points."""

from html.parser import HTMLParser

import pytest

from agent.mv.report import ledger_digest, render_html
from tests.agent.mv_synth import sample_report

SECTIONS = {"method", "model", "statistics", "coverage", "savings", "co2", "money", "ab", "charts", "events",
            "provenance"}


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []  # (tag, attrs)
        self.stack = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(self.stack)))
        if tag not in {"meta", "line", "circle", "polyline", "polygon", "br"}:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), tuple(self.stack)))

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def good():
    report = sample_report()
    page = render_html(report)
    parser = _Collector()
    parser.feed(page)
    parser.close()
    return report, page, parser


def _points(attr):
    return [tuple(map(float, p.split(","))) for p in attr.split()]


def test_page_is_self_contained_and_has_every_section(good):
    report, page, parser = good
    ids = {a.get("id") for _, a, _ in parser.elements}
    assert SECTIONS <= ids
    assert parser.stack == []  # every element closed
    assert not any(tag in {"script", "link", "img"} for tag, _, _ in parser.elements)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    text = " ".join(parser.text)
    assert "Meets ASHRAE Guideline 14" in text
    assert report.ledger_sha256 in text and "0.1.0" in text
    assert "pressure setpoint limits widened" in text and "clock_step" in text
    assert "MEE 2022 national grid average <enterprise GHG reporting>" in text  # escaped, shown verbatim
    assert "<enterprise" not in page
    for c in ("68 % interval", "90 % interval"):
        assert c.replace(" ", "") in text.replace(" ", "")


def test_every_chart_holds_its_data(good):
    report, _, parser = good
    lines = {a["data-series"]: a for tag, a, _ in parser.elements if tag == "polyline"}
    m = len(report.reporting_t_s)
    for name in ("baseline (model)", "measured", "cumulative savings"):
        assert len(_points(lines[name]["points"])) == int(lines[name]["data-n"]) == m
    band = next(a for tag, a, _ in parser.elements if tag == "polygon")
    assert len(_points(band["points"])) == 2 * m
    circles = [e for e in parser.elements if e[0] == "circle"]
    assert len(circles) == len(report.baseline_t_s)
    # Every point lies inside the plot's viewBox.
    for a in lines.values():
        assert all(0 <= x <= 1000 and 0 <= y <= 300 for x, y in _points(a["points"]))
    # The cumulative savings line rises: the last point sits above the first (SVG y grows downwards).
    cum = _points(lines["cumulative savings"]["points"])
    assert cum[-1][1] < cum[0][1]
    # The band widens with time (the uncertainty of a sum grows with m).
    pts = _points(band["points"])
    assert abs(pts[m - 1][1] - pts[m][1]) > abs(pts[0][1] - pts[-1][1])


def test_a_failing_model_is_reported_as_failing():
    page = render_html(sample_report(fail=True))
    assert "Not signable" in page and "CV(RMSE)" in page
    assert '<span class="fail">FAIL</span>' in page


def test_ledger_digest_is_canonical_and_order_sensitive():
    rows = [(1, "a", 2.5), (2, "b", None)]
    assert ledger_digest(rows) == ledger_digest([list(r) for r in rows])
    assert ledger_digest(rows) != ledger_digest(rows[::-1])
    assert len(ledger_digest([])) == 64
