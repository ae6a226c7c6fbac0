"""Value-driven token budgets: the trainer's value scores decide how many tokens each source
and bucket may contribute next, and the pipeline prunes the rest before it costs compute.

Modules (no heavy imports here; Faust and Kafka clients load only where used):

* ``features``    - budget keys, document buckets (language, length), the keep probability
                    that the pruning stage and the allocator both compute.
* ``allocator``   - the allocation rule, pure: statistics per source and bucket, multiplicative
                    weights over excess value, floors, exploration, poisoning caps -> BudgetUpdate.
                    Its settings and per-key statistics: ``allocator_state``; its arithmetic:
                    ``mix_rules``; the poisoning guard: ``poisoning_guard``.
* ``agent``       - the Faust app: ValueScores (and rejections) in, BudgetUpdates out, statistics in a table.
* ``reader``      - where the pruning stage gets the current BudgetUpdate (Kafka, a file, memory).
* ``report``      - what pruning removed, by source, language and length.

The pruning operator itself is ``streams/stages/budget_prune.py`` (recipe op ``budget_prune``); the
commands ``foundry budget`` and ``foundry budget-report`` are in ``foundry/cli_budget.py``.
"""
