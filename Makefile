# Both entry points install what they need into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The compiled decision kernel, rebuilt in place when its source changes.
KERNEL := $(VENV)/.kernel-built

# The serving-only install (no torch, SB3, mlflow), checked in its own venv.
SERVE_VENV := .venv-serve
SERVE_CHECK := .serving-check

.PHONY: install demo test test-serving lint bench clean

$(STAMP): pyproject.toml
	# bubblewrap isolates the code verifier's candidates; as root with apt, install it if missing.
	command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && apt-get install -y -qq bubblewrap; } || echo "warning: bubblewrap not installed (apt-get install -y bubblewrap): the code sandbox falls back to unshare namespaces" >&2
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU wheel of torch first: otherwise stable-baselines3 pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,train,serve,llm,ray]'
	touch $(STAMP)

$(KERNEL): $(STAMP) allocator/_mlpkernel.c setup.py
	$(BIN)/pip install -q --no-deps -e .
	touch $(KERNEL)

install: $(STAMP) $(KERNEL)

demo: $(STAMP) $(KERNEL)
	$(BIN)/allocator demo --output demo-output

# ALLOCATOR_REQUIRE_KERNEL: a package installed without its compiled kernel fails the
# tests instead of skipping the kernel's rows. ALLOCATOR_REQUIRE_RAY: the Ray tests (sweeps,
# sharded evaluation) fail instead of skipping where the `ray` extra is missing.
test: $(STAMP) $(KERNEL)
	$(BIN)/ruff check .
	$(MAKE) test-serving
	ALLOCATOR_REQUIRE_KERNEL=1 ALLOCATOR_REQUIRE_RAY=1 RAY_AUTH_MODE=disabled $(BIN)/pytest -q

# `pip install '.[serve]'` (a wheel, not editable) into a fresh venv: the full install
# exports a tiny bundle and records its HTTP answers, the serving install (run from outside
# the repository) must load it, answer the same and lack every training library.
test-serving: $(STAMP) $(KERNEL)
	rm -rf $(SERVE_VENV) $(SERVE_CHECK)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/python tests/serving_only/make_reference.py $(SERVE_CHECK)
	$(PY) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install -q --upgrade pip
	$(SERVE_VENV)/bin/pip install -q '.[serve]'
	cd $(SERVE_CHECK) && $(CURDIR)/$(SERVE_VENV)/bin/python \
		$(CURDIR)/tests/serving_only/check_serving_install.py .

bench: $(STAMP) $(KERNEL)
	$(BIN)/python benchmarks/env_throughput.py
	$(BIN)/python benchmarks/log_loading.py

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(SERVE_CHECK) demo-output
