"""The report document: blocks rendered through the Jinja2 templates to HTML and Markdown."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kairos_curate.reporting.report import (
    Callout,
    Figure,
    Flow,
    Note,
    Report,
    Section,
    inline_html,
    stage_wall_times,
)

from ..fake_datasets import make_report_project, png


def test_inline_markup_is_escaped_then_formatted():
    assert inline_html("`a<b>` **bold** [page](notebooks/x.html) & <script>") == (
        "<code>a&lt;b&gt;</code> <b>bold</b> <a href='notebooks/x.html'>page</a> &amp; &lt;script&gt;"
    )


def test_every_block_kind_renders_in_both_formats(tmp_path):
    fig = tmp_path / "figs" / "a_plot.png"
    png(fig, 0)
    table = pd.DataFrame({"x": [1.23456], "y": ["<i>"]})
    rep = Report(
        "R <&>",
        [
            Section(
                "S one",
                [
                    "**bold** & `x`",
                    fig,
                    Figure(tmp_path / "figs" / "05_finetune" / "gone.png"),
                    Note("missing `y`"),
                    Flow([("prepare", "10 images"), ("embed", "`enc`")]),
                    ["first", "second `z`"],
                    table,
                ],
            )
        ],
        lead=[Callout("Key results", "headline **h**", ["line 1"], "good")],
        subtitle="sub",
    )
    html = rep.to_html()
    assert "<title>R &lt;&amp;&gt;</title>" in html and "<b>bold</b> &amp; <code>x</code>" in html
    assert "data:image/png;base64," in html and "<figcaption>a plot</figcaption>" in html
    assert "figs/05_finetune/gone.png</code> was not produced; run <code>dvc repro finetune</code>" in html
    assert (
        'class="callout good"' in html and "<b>h</b>" in html and html.index("Key results") < html.index('class="toc"')
    )
    assert "<div><b>prepare</b> 10 images</div><span> → </span><div><b>embed</b> <code>enc</code></div>" in html
    assert "<li>second <code>z</code></li>" in html and "1.235" in html and "&lt;i&gt;" in html
    assert 'id="s-one"' in html
    md = rep.to_markdown(tmp_path)
    assert md.startswith("# R <&>") and "![a plot](figs/a_plot.png)" in md and "**Note:** missing `y`" in md
    assert "> **Key results**" in md and "> - line 1" in md and "**prepare** (10 images) → **embed**" in md
    assert "- second `z`" in md and "|     x | y   |" in md and "## S one" in md


def test_stage_wall_times_reads_papermill_metadata(tmp_path):
    root = make_report_project(tmp_path)
    walls = stage_wall_times(root / "reports" / "notebooks")
    assert walls["stage"].tolist() == ["prepare", "embed", "value"]
    np.testing.assert_allclose(walls["wall time (s)"], [10.5, 21.0, 31.5])
    (root / "reports" / "notebooks" / "04_compare.ipynb").write_text(json.dumps({"metadata": {}}))
    assert len(stage_wall_times(root / "reports" / "notebooks")) == 3  # no papermill metadata: skipped
