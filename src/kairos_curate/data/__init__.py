"""Data: scenarios (a noisy pool, a clean reference, a clean test set), corruptions, image sources.

* :mod:`.scenario` / :mod:`.scenario_config` - the offline Fashion-MNIST default;
  :mod:`.real_scenario` with the adapters (:mod:`.inaturalist`, :mod:`.insects`,
  :mod:`.adapters`) - the poster's iNaturalist pool against the Insects reference;
* :mod:`.corruptions` - pixel corruptions and label flips that return the rows they changed;
* :mod:`.noise_settings` and :mod:`.variants` - pool variants of the method comparison;
* :mod:`.suite_scenario` - scenarios of the selection suite: the default with overrides plus extra
  problems (motion blur, sensor noise, confusable flips, a rare class, near duplicates);
* :mod:`.sources` - lazy image sources (arrays, files, lists) behind one interface.

The truth table of a scenario records what was done to each pool image; only evaluation reads it.
"""
