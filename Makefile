# cspresnet - `make` builds build/libcspresnet.a, build/libcspresnet.so and the CLI
# build/cspresnet. Sources are found by wildcard: one op per file, added freely.
# `make test` runs the whole suite; `make asan` builds and tests with ASan+UBSan.

CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
CFLAGS   ?=
# -Wno-format-truncation (gcc only): snprintf into fixed key/message buffers truncates by design.
WNO_TRUNC := $(shell $(CC) -Werror -Wno-format-truncation -E -x c /dev/null >/dev/null 2>&1 && echo -Wno-format-truncation)
CSTD      = -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -Wshadow -Wvla $(WNO_TRUNC)
ALLFLAGS  = $(CSTD) $(OPT) -g -fPIC -Iinclude -Isrc $(CFLAGS)
LDLIBS    = -lm -lpthread
VERSION   = 0.1.0
SOVERSION = 0

LIB_SRC  := $(sort $(wildcard src/*/*.c src/kernels/*/*.c))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/c/*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:tests/c/%.c=$(BUILD)/tests/%)

.PHONY: all test asan clean
all: $(BUILD)/libcspresnet.a $(BUILD)/libcspresnet.so $(BUILD)/cspresnet $(TEST_BIN)

$(BUILD)/obj/%.o: %.c $(wildcard include/*.h src/*/*.h src/kernels/*.h cli/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(ALLFLAGS) -c $< -o $@

$(BUILD)/libcspresnet.a: $(LIB_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(BUILD)/libcspresnet.so: $(LIB_OBJ)
	@echo "  LD      $@"
	@$(CC) -shared -Wl,-soname,libcspresnet.so.$(SOVERSION) $(ALLFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/cspresnet: $(CLI_OBJ) $(BUILD)/libcspresnet.a
	@echo "  LD      $@"
	@$(CC) $(ALLFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libcspresnet.a $(LDLIBS)

$(BUILD)/tests/%: tests/c/%.c $(BUILD)/libcspresnet.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(ALLFLAGS) -o $@ $< $(BUILD)/libcspresnet.a $(LDLIBS)

test: all
	CSPRESNET_BUILD=$(BUILD) /usr/bin/python3 -m pytest -q tests

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  LDFLAGS= all
	CSPRESNET_BUILD=build-asan ASAN_OPTIONS=detect_leaks=1 \
	  /usr/bin/python3 -m pytest -q tests

clean:
	rm -rf build build-asan
