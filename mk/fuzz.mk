# mk/fuzz.mk -- fuzzing: libFuzzer targets (tests/fuzz/) over request validation (validate),
# the worker's handling of every client message (protocol) and the client's checks of the
# worker's HELLO (hello), their committed seed corpus (tests/fuzz/corpus/), and their coverage.
#
#   make fuzz [FUZZ_SECONDS=60]  builds the targets with clang and ASan+UBSan into build-fuzz/,
#                                replays the committed corpus (any crash, leak or failed check
#                                fails the run), then fuzzes each target for FUZZ_SECONDS, one
#                                after the other (3 x FUZZ_SECONDS in all), keeping new inputs in
#                                build-fuzz/corpus/<target>/; prints executions per target.
#   make fuzz-coverage           line and branch coverage of src/validate.c, src/session.c and
#                                the client's hello reached by the committed corpus plus
#                                build-fuzz/corpus/ (llvm-cov report).
#
# Both install clang, libFuzzer and the llvm tools when missing (scripts/ensure_clang.sh).
# A failure leaves its input in build-fuzz/artifacts/; replay it with build-fuzz/fuzz_<target>
# FILE. To keep an input as a regression case, copy it into tests/fuzz/corpus/<target>/.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
FUZZ_DIR := build-fuzz
FUZZ_TARGETS := validate protocol hello
FUZZ_CORPUS := tests/fuzz/corpus

FUZZ_SRC_validate := src/validate.c src/dtype.c
FUZZ_SRC_protocol := $(filter-out src/worker_main.c,$(WORKER_SRC))
FUZZ_SRC_hello := $(LIB_SRC)

FUZZ_CFLAGS := $(CSTD) $(WARN) -g -O1 -fno-omit-frame-pointer -Iinclude -Isrc
FUZZ_SAN := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_COV := -fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping
FUZZ_LIBS := -pthread -lrt

# Per input: 10 s is a hang; 2 GB of memory is a leak or a worker that maps what it must not.
FUZZ_RUN_OPTS := -timeout=10 -rss_limit_mb=2048
FUZZ_MAX_LEN_validate := 64
FUZZ_MAX_LEN_protocol := 1056
FUZZ_MAX_LEN_hello := 289

# llvm-profdata and llvm-cov of clang's own version (its profile format), else from PATH.
FUZZ_LLVM_BIN = $(dir $(realpath $(shell command -v $(FUZZ_CC))))
fuzz_llvm_tool = $(or $(wildcard $(FUZZ_LLVM_BIN)$(1)),$(1))

.PHONY: fuzz fuzz-coverage fuzz-toolchain

fuzz-toolchain:
	@scripts/ensure_clang.sh $(FUZZ_CC)

# The ASan+UBSan build of tests/fuzz/fuzz_<target>.c and its coverage build.
define fuzz_rules
$(FUZZ_DIR)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_SRC_$(1)) $(HEADERS) | fuzz-toolchain
	@mkdir -p $$(dir $$@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -o $$@ $$< $(FUZZ_SRC_$(1)) $(FUZZ_LIBS)

$(FUZZ_DIR)/cov/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_SRC_$(1)) $(HEADERS) | fuzz-toolchain
	@mkdir -p $$(dir $$@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_COV) -o $$@ $$< $(FUZZ_SRC_$(1)) $(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_rules,$(t))))

fuzz: $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZ_TARGETS))
	@set -e; for t in $(FUZZ_TARGETS); do \
	    bin=$(FUZZ_DIR)/fuzz_$$t; log=$(FUZZ_DIR)/replay_$$t.log; \
	    n=$$(ls $(FUZZ_CORPUS)/$$t | wc -l); \
	    echo "fuzz_$$t: replaying $$n inputs of $(FUZZ_CORPUS)/$$t"; \
	    if ! $$bin $(FUZZ_RUN_OPTS) $(FUZZ_CORPUS)/$$t/* >$$log 2>&1; then \
	        tail -n 40 $$log; echo "fuzz_$$t: the committed corpus fails (log: $$log)"; exit 1; \
	    fi; \
	done
	@set -e; $(foreach t,$(FUZZ_TARGETS),max_len_$(t)=$(FUZZ_MAX_LEN_$(t));) \
	for t in $(FUZZ_TARGETS); do \
	    bin=$(FUZZ_DIR)/fuzz_$$t; log=$(FUZZ_DIR)/fuzz_$$t.log; \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts; \
	    echo "fuzz_$$t: fuzzing for $(FUZZ_SECONDS) s (log: $$log)"; \
	    eval "max_len=\$$max_len_$$t"; \
	    if ! $$bin $(FUZZ_RUN_OPTS) -max_len=$$max_len -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	            -artifact_prefix=$(FUZZ_DIR)/artifacts/fuzz_$$t- \
	            $(FUZZ_DIR)/corpus/$$t $(FUZZ_CORPUS)/$$t >$$log 2>&1; then \
	        tail -n 60 $$log; echo "fuzz_$$t: FAILED, input in $(FUZZ_DIR)/artifacts/ (log: $$log)"; \
	        exit 1; \
	    fi; \
	    execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $$log); \
	    rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $$log); \
	    added=$$(sed -n 's/^stat::new_units_added: *//p' $$log); \
	    rss=$$(sed -n 's/^stat::peak_rss_mb: *//p' $$log); \
	    echo "fuzz_$$t: $$execs executions in $(FUZZ_SECONDS) s ($$rate/s), $$added new inputs," \
	         "peak RSS $$rss MB, no crash"; \
	done

# Coverage: an instrumented build runs every input once (-runs=0 over the corpus dirs).
fuzz-coverage: $(patsubst %,$(FUZZ_DIR)/cov/fuzz_%,$(FUZZ_TARGETS))
	@set -e; rm -f $(FUZZ_DIR)/cov/*.profraw; for t in $(FUZZ_TARGETS); do \
	    mkdir -p $(FUZZ_DIR)/corpus/$$t; \
	    LLVM_PROFILE_FILE=$(FUZZ_DIR)/cov/fuzz_$$t.profraw $(FUZZ_DIR)/cov/fuzz_$$t \
	        $(FUZZ_RUN_OPTS) -runs=0 $(FUZZ_DIR)/corpus/$$t $(FUZZ_CORPUS)/$$t \
	        >$(FUZZ_DIR)/cov/fuzz_$$t.log 2>&1 \
	        || { tail -n 20 $(FUZZ_DIR)/cov/fuzz_$$t.log; exit 1; }; \
	    $(call fuzz_llvm_tool,llvm-profdata) merge -sparse $(FUZZ_DIR)/cov/fuzz_$$t.profraw \
	        -o $(FUZZ_DIR)/cov/fuzz_$$t.profdata; \
	    echo "fuzz_$$t: inputs $$(ls $(FUZZ_CORPUS)/$$t | wc -l) committed +" \
	         "$$(ls $(FUZZ_DIR)/corpus/$$t | wc -l) found"; \
	done
	@echo "== src/validate.c (fuzz_validate)"
	@$(call fuzz_llvm_tool,llvm-cov) report -show-functions $(FUZZ_DIR)/cov/fuzz_validate \
	    -instr-profile=$(FUZZ_DIR)/cov/fuzz_validate.profdata src/validate.c
	@echo "== src/session.c (fuzz_protocol: the message handler, not the accept/poll loop)"
	@$(call fuzz_llvm_tool,llvm-cov) report -show-functions $(FUZZ_DIR)/cov/fuzz_protocol \
	    -instr-profile=$(FUZZ_DIR)/cov/fuzz_protocol.profdata src/session.c
	@echo "== src/client.c (fuzz_hello: the HELLO and header checks)"
	@$(call fuzz_llvm_tool,llvm-cov) report -show-functions $(FUZZ_DIR)/cov/fuzz_hello \
	    -instr-profile=$(FUZZ_DIR)/cov/fuzz_hello.profdata src/client.c | grep -E '^(Name|sa__client_hello)'
