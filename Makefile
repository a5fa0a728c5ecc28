# Two set-up commands for a fresh Debian machine:
#   make demo   install what is missing, build, run a 100,000-recipient campaign
#   make test   install what is missing, build, run every test
BAZEL ?= bazel
PY := /usr/bin/python3

.PHONY: deps build test demo bench bench-scale bench-ingest bench-priority bench-micro fuzz clean

deps:
	@deploy/install-deps.sh

build: deps
	$(BAZEL) build //...

test: deps
	@rc=0; $(BAZEL) test //... || rc=$$?; \
	$(PY) tests/summarize.py bazel-testlogs; exit $$rc

demo: deps
	$(BAZEL) build //engine:salvo
	SALVO_BIN=$$($(BAZEL) info bazel-bin)/engine/salvo $(PY) deploy/demo.py

# End-to-end benchmark: N personalized 5 KB messages over D domains.
bench: deps
	$(BAZEL) build //engine:salvo
	SALVO_BIN=$$($(BAZEL) info bazel-bin)/engine/salvo $(PY) bench/e2e_bench.py --recipients $${N:-100000} --domains $${D:-50}

# Scale benchmark: N (default 10,000,000) recipients queued at once: max RSS,
# delivery rate against a 100,000 queue, kill -9 restart to first delivery.
# Needs about 3 GB of disk under $$TMPDIR for 10M.
bench-scale: deps
	$(BAZEL) build //engine:salvo
	SALVO_BIN=$$($(BAZEL) info bazel-bin)/engine/salvo $(PY) bench/scale_bench.py --recipients $${N:-10000000} --domains $${D:-50}
# Durable ingest: N recipients streamed over C concurrent uploads (F: ndjson|csv).
bench-ingest: deps
	$(BAZEL) build //engine:salvo
	SALVO_BIN=$$($(BAZEL) info bazel-bin)/engine/salvo $(PY) bench/ingest_bench.py --recipients $${N:-4000000} --uploads $${C:-4} --format $${F:-ndjson}
# Transactional accept-to-250 (p50/p90/p99/max) while a 200,000-recipient
# campaign saturates the same domain.
bench-priority: deps
	$(BAZEL) build //engine:salvo
	SALVO_BIN=$$($(BAZEL) info bazel-bin)/engine/salvo $(PY) bench/priority_bench.py

bench-micro: deps
	$(BAZEL) run //bench:queue_bench
	$(BAZEL) run //bench:render_bench
	$(BAZEL) run //bench:reply_parser_bench

clean:
	$(BAZEL) clean
