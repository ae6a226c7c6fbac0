# The two first commands: `make demo` (set up, start Kafka, run the whole loop for a few minutes) and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
FOUNDRY := $(VENV)/bin/foundry
KAFKA_HOME ?= var/kafka
BOOTSTRAP ?= 127.0.0.1:9092
CORPUS ?=
DEMO_MINUTES ?= 3
OUT ?= out
# pip and Maven keep their caches outside the clone (~/.cache/pip, ~/.m2), so a
# second install on the same machine reuses the downloads.

.PHONY: install demo test bench kafka-up kafka-down clean faults

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(VENV)/.installed

# The whole loop for DEMO_MINUTES on real text (CORPUS=..., or ../shared/data beside the clone) and
# generated low-value sources, then a summary; `foundry up` runs the same factory until stopped.
demo: install
	$(FOUNDRY) demo --minutes $(DEMO_MINUTES) --bootstrap $(BOOTSTRAP) --kafka-home $(KAFKA_HOME) --out $(OUT) \
	  $(foreach c,$(CORPUS),--corpus $(c))

test: install
	$(PY) -m pytest -q -p no:cacheprovider

# The fault suite alone, in full (tests/faults: kill -9 of every process kind over FAULT_ROUNDS rounds,
# broker and whole-cluster restarts, a full output disk, the trainer killed mid-checkpoint, a paused
# sink) on a three-broker cluster of its own; `make test` runs a shortened set of it.
FAULT_ROUNDS ?= 20
faults: install
	FOUNDRY_FAULT_ROUNDS=$(FAULT_ROUNDS) $(PY) -m pytest -q -p no:cacheprovider -s tests/faults

bench: install
	$(PY) bench/pipeline.py

kafka-up: install
	$(FOUNDRY) kafka up --home $(KAFKA_HOME)

kafka-down: install
	$(FOUNDRY) kafka down --home $(KAFKA_HOME)

clean:
	rm -rf $(OUT) var
