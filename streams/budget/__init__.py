"""Value-driven token budgets: the trainer's value scores decide how many tokens each source
and bucket may contribute next, and the pipeline prunes the rest before it costs compute.

Modules (no heavy imports here; Faust and Kafka clients load only where used):

* ``features``    - budget keys, document buckets (language, length), the keep probability
                    that the pruning stage and the allocator both compute.
* ``allocator``   - the allocation rule, pure: statistics per source and bucket, multiplicative
                    weights over excess value, floors, exploration, poisoning caps -> BudgetUpdate.
* ``agent``       - the Faust app: ValueScores (and rejections) in, BudgetUpdates out, statistics in a table.
* ``reader``      - where the pruning stage gets the current BudgetUpdate (Kafka, a file, memory).
* ``token_prune`` - trainer-side pruning: repeated token spans inside admitted documents.
* ``report``      - what pruning removed, by source, language and length.

The pruning operator itself is ``streams/stages/budget_prune.py`` (recipe op ``budget_prune``); the
commands ``foundry budget`` and ``foundry budget-report`` are in ``foundry/cli_budget.py``.
"""
