"""Packs on our worker: curated photoshoots (a catalog of TOML files) run on a tune.

- `catalog`: the pack files, validated at load, with stable ids;
- `runs`: a pack (or `tune[prompts_attributes]`) turned into prompts of a tune, queued as one
  run, plus the run's `prompts_callback`;
- `records`: the run and like tables beside the worker's queue.

The HTTP side is `backends/local/pack_routes.py`; the order in which a run's prompts are picked
is `backends/local/schedule.py`.
"""
