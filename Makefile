# cspresnet - `make` builds build/libcspresnet.a, build/libcspresnet.so.$(VERSION) with the
# soname link libcspresnet.so.0 and the link libcspresnet.so (as installed), and the CLI
# build/cspresnet. Sources are found by wildcard: one op per file, added freely.
# `make test` runs the whole suite; `make asan` builds and tests with ASan+UBSan.

CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
CFLAGS   ?=
# -Wno-format-truncation (gcc only): snprintf into fixed key/message buffers truncates by design.
WNO_TRUNC := $(shell $(CC) -Werror -Wno-format-truncation -E -x c /dev/null >/dev/null 2>&1 && echo -Wno-format-truncation)
CSTD      = -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Wshadow -Wvla $(WNO_TRUNC)
INCLUDES  = -Iinclude -Isrc
ALLFLAGS  = $(CSTD) $(OPT) -g -fPIC $(INCLUDES) $(CFLAGS)
LDLIBS    = -lm -lpthread
VERSION   = 0.1.0
SOVERSION = 0

# src/formats/ (safetensors, needs jansson) is an optional module, never in the core library.
LIB_SRC  := $(sort $(filter-out src/formats/%,$(wildcard src/*/*.c src/kernels/*/*.c)))
FMT_SRC  := $(sort $(wildcard src/formats/*.c))
FMT_OBJ  := $(FMT_SRC:%.c=$(BUILD)/obj/%.o)
FMT_LIBS  = -ljansson
# The CLI's image module (cli/image_*.c) decodes with libjpeg-turbo and libpng; not the library.
IMG_LIBS  = -ljpeg -lpng
# `cspresnet train` reads the gzip-compressed Fashion-MNIST files through zlib (CLI only).
DATA_LIBS = -lz
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/c/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

.PHONY: all test asan clean bench
all: $(BUILD)/libcspresnet.a $(BUILD)/libcspresnet.so $(BUILD)/libcspresnet_formats.a $(BUILD)/cspresnet $(TEST_BIN)

# The CLI sees only the public headers (include/) and its own.
$(CLI_OBJ): INCLUDES = -Iinclude

$(BUILD)/obj/%.o: %.c $(wildcard include/*.h src/*/*.h src/kernels/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALLFLAGS) -c $< -o $@

$(BUILD)/libcspresnet.a: $(LIB_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

# The same three names as the install, so `cc -Lbuild -lcspresnet` links and the program
# finds the soname libcspresnet.so.0 with LD_LIBRARY_PATH=build.
$(BUILD)/libcspresnet.so.$(VERSION): $(LIB_OBJ)
	@echo "  LD      $@"
	@$(CC) -shared -Wl,-soname,libcspresnet.so.$(SOVERSION) $(ALLFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libcspresnet.so.$(SOVERSION): $(BUILD)/libcspresnet.so.$(VERSION)
	@rm -f $@
	@ln -s libcspresnet.so.$(VERSION) $@

$(BUILD)/libcspresnet.so: $(BUILD)/libcspresnet.so.$(SOVERSION)
	@rm -f $@
	@ln -s libcspresnet.so.$(SOVERSION) $@

$(BUILD)/libcspresnet_formats.a: $(FMT_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(BUILD)/cspresnet: $(CLI_OBJ) $(BUILD)/libcspresnet_formats.a $(BUILD)/libcspresnet.a
	@echo "  LD      $@"
	@$(CC) $(ALLFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcspresnet_formats.a $(BUILD)/libcspresnet.a $(FMT_LIBS) $(IMG_LIBS) $(DATA_LIBS) $(LDLIBS)

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libcspresnet.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libcspresnet.a $(LDLIBS)

test: all
	CSPRESNET_BUILD=$(BUILD) /usr/bin/python3 -m pytest -q tests

# The tests see the same OPT/CFLAGS in their environment, so a nested make (the install
# test) rebuilds build-asan with the sanitizer flags rather than mixing objects.
ASAN_CFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 CFLAGS="$(ASAN_CFLAGS)" LDFLAGS= all
	OPT=-O1 CFLAGS="$(ASAN_CFLAGS)" CSPRESNET_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 \
	  /usr/bin/python3 -m pytest -q tests

clean:
	rm -rf build build-asan

# `make install PREFIX=/opt/x` (and DESTDIR for staging): static and versioned shared
# library with soname links, the public headers, the CLI, the pkg-config files (cspresnet
# links the shared library, cspresnet-static the archive), man page.
PREFIX  ?= /usr/local
DESTDIR ?=
.PHONY: install
install: all
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(BUILD)/libcspresnet.a $(DESTDIR)$(PREFIX)/lib/libcspresnet.a
	install -m 755 $(BUILD)/libcspresnet.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libcspresnet.so.$(VERSION)
	ln -sf libcspresnet.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libcspresnet.so.$(SOVERSION)
	ln -sf libcspresnet.so.$(SOVERSION) $(DESTDIR)$(PREFIX)/lib/libcspresnet.so
	install -m 644 include/cspresnet.h $(DESTDIR)$(PREFIX)/include/cspresnet.h
	install -m 644 include/cspresnet_io.h $(DESTDIR)$(PREFIX)/include/cspresnet_io.h
	install -m 755 $(BUILD)/cspresnet $(DESTDIR)$(PREFIX)/bin/cspresnet
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' cspresnet.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cspresnet.pc
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' cspresnet-static.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cspresnet-static.pc
	install -m 644 $(BUILD)/libcspresnet_formats.a $(DESTDIR)$(PREFIX)/lib/libcspresnet_formats.a
	install -m 644 include/cspresnet_formats.h $(DESTDIR)$(PREFIX)/include/cspresnet_formats.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' cspresnet_formats.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/cspresnet_formats.pc
	install -m 644 man/cspresnet.1 $(DESTDIR)$(PREFIX)/share/man/man1/cspresnet.1

# Speed against ONNX Runtime (npm onnxruntime-node) and PyTorch, each on the network as its users
# export and run it (bench/anchors.py); writes bench/results.md. Deps: scripts/install-deps.sh bench.
# BENCH_MODELS=s, BENCH_ROUNDS=1, BENCH_RUNS=2 shorten it; BENCH_OLD_ANCHOR=1 also times the port's graph.
# BENCH_MODELS=s,l,det-s,det-l adds the detector rows (bench/det_bench.py: "Detector" section of
# results.md, kept when a run leaves them out); BENCH_SIZE=160 makes a quick dry run.
bench: all
	CSPRESNET_BUILD=$(BUILD) /usr/bin/python3 bench/run_bench.py

# ---- Reliability (issue 7): fuzzing, ThreadSanitizer, valgrind, soak. See README "Reliability".
# `make fuzz` builds fuzz/fuzz_*.c with clang's libFuzzer (+ASan+UBSan) into build-fuzz/ and runs
# each for FUZZ_SECONDS on a corpus seeded by fuzz/make_seeds.py; crashes land in build-fuzz/crashes/
# (copy them into tests/regress/<kind>/ so that the suite replays them).
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   ?= build-fuzz
FUZZ_FLAGS    = -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -Iinclude -Isrc \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_IO_SRC  := $(sort $(wildcard src/core/*.c src/io/*.c))
FUZZERS      := $(patsubst fuzz/%.c,%,$(sort $(wildcard fuzz/fuzz_*.c)))
# what each harness links besides its own file (default: the core and io readers)
FUZZ_SRC_pdparams    = $(FUZZ_IO_SRC)
FUZZ_SRC_npy         = $(FUZZ_IO_SRC)
FUZZ_SRC_safetensors = $(LIB_SRC) $(FMT_SRC) $(FMT_LIBS)
FUZZ_SRC_image       = -Icli cli/image_read.c $(IMG_LIBS)
.PHONY: fuzz fuzz-build tsan valgrind soak

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(LIB_SRC) $(FMT_SRC) $(wildcard src/*/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@echo "  FUZZ    $@"
	@$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_SRC_$*) -lm -lpthread

fuzz-build: $(FUZZERS:%=$(FUZZ_BUILD)/%)

fuzz: fuzz-build
	/usr/bin/python3 fuzz/make_seeds.py $(FUZZ_BUILD)/seeds
	@set -e; for f in $(FUZZERS); do \
	  kind=$${f#fuzz_}; mkdir -p $(FUZZ_BUILD)/corpus/$$kind $(FUZZ_BUILD)/crashes; \
	  echo "== $$f for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 \
	    -artifact_prefix=$(FUZZ_BUILD)/crashes/$$kind- $(FUZZ_BUILD)/corpus/$$kind \
	    $(FUZZ_BUILD)/seeds/$$kind tests/regress/$$kind 2>$(FUZZ_BUILD)/$$f.log || \
	    { tail -40 $(FUZZ_BUILD)/$$f.log; exit 1; }; \
	  grep -E "^Done [0-9]+ runs" $(FUZZ_BUILD)/$$f.log; \
	done

# ThreadSanitizer: several threads, each with its own context, on one shared loaded model;
# and the fast convolutions split over 2 threads (tests/c/test_kernels_conv), the bf16 ones
# (AMX tiles configured per thread) and the int8 ones (test_conv_bf16, test_conv_int8).
tsan:
	$(MAKE) BUILD=build-tsan OPT=-O1 CFLAGS="-fsanitize=thread -fno-omit-frame-pointer" \
	  LDFLAGS= build-tsan/tests/test_threads_shared_model build-tsan/tests/test_kernels_conv \
	  build-tsan/tests/test_conv_bf16 build-tsan/tests/test_conv_int8
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/test_threads_shared_model 4
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/test_kernels_conv
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/test_conv_bf16
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" build-tsan/tests/test_conv_int8

# valgrind memcheck of a forward pass (and a training step when the CLI has one); not in the
# suite because it is slow; see tests/valgrind.sh.
valgrind: all
	CSPRESNET_BUILD=$(BUILD) tests/valgrind.sh

# Soak: 10,000 inferences of varied small shapes in one process (RSS flat, results identical).
soak: $(BUILD)/soak
	$(BUILD)/soak $(if $(SOAK_ITERS),$(SOAK_ITERS),10000)

$(BUILD)/soak: bench/soak.c $(BUILD)/libcspresnet.a
	@echo "  LD      $@"
	@$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libcspresnet.a $(LDLIBS)
