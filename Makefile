# The two commands of the quick start: `make run` and `make test`. Both install what they need.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint format worker beat bench fuzz lock

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -c requirements.lock
	@touch $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# With REDIS_URL set: the sending and scheduling processes of a real deployment.
worker: install
	$(VENV)/bin/celery -A emailseq worker -Q default,send --loglevel INFO

beat: install
	$(VENV)/bin/celery -A emailseq beat --loglevel INFO

bench: install
	$(PY) bench/send_throughput.py
	$(PY) bench/scheduler_scale.py
	$(PY) bench/import_speed.py
	$(PY) bench/api_throughput.py

# The schema fuzzer at length: FUZZ_EXAMPLES per operation, a random seed each run (the suite
# runs a short, seeded pass).
FUZZ_EXAMPLES ?= 300
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_SEED=random $(PY) -m pytest api/tests/test_schema_fuzzing.py -p no:cacheprovider $(PYTEST_ARGS)

# Re-resolve the pinned set after changing requirements*.txt.
lock:
	rm -rf /tmp/emailseq-lock && $(PYTHON) -m venv /tmp/emailseq-lock
	/tmp/emailseq-lock/bin/pip install --quiet --upgrade pip
	/tmp/emailseq-lock/bin/pip install --quiet -r requirements-dev.txt
	/tmp/emailseq-lock/bin/pip freeze > requirements.lock
