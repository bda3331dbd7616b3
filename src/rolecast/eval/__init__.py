"""Evaluations: how well a character is played, and how well its canon is found.

    metrics.py    pure scores: ROUGE-L, chrF, embedding cosine, bootstrap intervals,
                  recall@k, MRR
    runner.py     items run through a backend, concurrently when it is thread-safe,
                  skipping those already in the cache
    report.py     results.json + report.md + PNG plots written atomically into an out dir;
                  the item cache (OUT/cache); Markdown tables and interval charts
    canon.py      canon reproduction on held-out scenes (canon / persona / bare)
    retrieval.py  recall@k and MRR of canon retrieval per embedder and mode
    viz.py        a 2-D map of canon lines against generated lines (PNG and HTML)
    interview.py  the Big Five interview
    probes.py     in-character probes

Nothing heavy is imported here: each module imports numpy, matplotlib or scikit-learn
where it needs them.
"""
