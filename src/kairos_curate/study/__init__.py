"""The study's logic, free of DVC and file paths: what the stages compute, as tested functions.

* :mod:`.detection` - how well a method's lowest values flag injected problems;
* :mod:`.downstream` - what each method's selections train (a logistic probe on embeddings);
* :mod:`.comparison` - the method comparison over noise settings and seeds (detection,
  downstream, point removal), summarised into tables;
* :mod:`.finetune_grid` - the fine-tuning grid: subsets (full, random, curated, oracle, sizes
  sweep) x methods x trials;
* :mod:`.selection_suite` - the selection study's suite: scenario x seed x budget x selection,
  each subset described against the truth and evaluated by the probe and by fine-tuning;
* :mod:`.tables` - mean ± std summaries;
* :mod:`.verdicts` - the computed sentences of the report (curated vs random vs full...).

Stage modules (:mod:`kairos_curate.stages`) load inputs, call these and write outputs.
"""
