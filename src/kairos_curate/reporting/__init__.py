"""Reporting: figures, formatted tables, the capstone report, the audit gallery, browser checks.

* :mod:`.plots` - every figure, drawn from result objects (``ax=None`` style);
* :mod:`.tables` - ``mean ± std`` tables for reading; :mod:`.takeaways` - each notebook's
  closing "what this shows", computed;
* :mod:`.capstone` - the report's content; :mod:`.report` - the document model rendered through
  Jinja2 templates (``templates/``) to HTML and Markdown;
* :mod:`.gallery` - the audit page; :mod:`.browser` - pages checked in headless Chromium.

Nothing here computes results; it shows what :mod:`kairos_curate.study` computed.
"""
