# Builds the pure library, the control plane, the C unit tests and the fuzz
# targets.  The nginx module is built by nginx's own build (see build.sh).

CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
           -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIC -Ilib -Ibuild \
           -I/usr/include/postgresql
CP_LIBS  = -lpq -lmicrohttpd -lcjson -lsodium -lcurl -lcjose -lcrypto -lpcre2-8 -lz -lisal -lpthread -lexpat

B        = build

LIB_SRC  = $(wildcard lib/*.c)
LIB_OBJ  = $(LIB_SRC:%.c=$(B)/%.o)
CP_SRC   = $(wildcard control-plane/*.c)
CP_OBJ   = $(CP_SRC:%.c=$(B)/%.o)
UNIT_SRC = $(wildcard t/unit/test_*.c)
UNIT_BIN = $(UNIT_SRC:t/unit/%.c=$(B)/unit/%)
FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:fuzz/%.c=$(B)/fuzz/%)

.PHONY: all lib control-plane tools unit fuzz clean

all: lib control-plane tools $(UNIT_BIN)

lib: $(B)/libvmx.a

control-plane: $(B)/vmx-control-plane

$(B)/%.o: %.c $(wildcard lib/*.h control-plane/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icontrol-plane -c $< -o $@

# the Unicode classes of the token counter's pattern, from the pinned npm data
$(B)/vmx_unicode.h: tools/tokenizer/unicode.mjs tools/tokenizer/package-lock.json
	@mkdir -p $(dir $@)
	node tools/tokenizer/unicode.mjs $@

$(B)/lib/vmx_tokenizer.o: $(B)/vmx_unicode.h

$(B)/libvmx.a: $(LIB_OBJ)
	ar rcs $@ $^

$(B)/vmx-control-plane: $(CP_OBJ) $(B)/libvmx.a
	$(CC) $(CFLAGS) -o $@ $^ $(CP_LIBS)

# o200k_base token ids of samples on stdin, for the equality tests and bench
tools: $(B)/tools/vmx-tokenize

$(B)/tools/vmx-tokenize: tools/tokenizer/vmx_tokenize.c $(B)/libvmx.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(B)/libvmx.a -lpcre2-8 -lz -lisal

# the tests find t/fixtures relative to the repository root, where `make unit` runs them
FIXTURES = $(wildcard t/fixtures/*/*)

$(B)/unit/%: t/unit/%.c $(B)/libvmx.a t/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DVMX_FIXTURES='"t/fixtures"' -It/unit -o $@ $< $(B)/libvmx.a -lcrypto -lpcre2-8 -lz -lisal

$(B)/unit/test_wire_split: $(FIXTURES)

# the policies of the control plane are pure C over cJSON
$(B)/unit/test_policy: t/unit/test_policy.c $(B)/control-plane/policy.o $(B)/libvmx.a t/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icontrol-plane -It/unit -o $@ $< $(B)/control-plane/policy.o $(B)/libvmx.a -lcjson

# the OIDC claim checks, with the control plane's objects oidc.c needs
OIDC_UNIT_OBJ = $(B)/control-plane/oidc.o $(B)/control-plane/httpc.o $(B)/control-plane/log.o

$(B)/unit/test_oidc: t/unit/test_oidc.c $(OIDC_UNIT_OBJ) t/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icontrol-plane -It/unit -o $@ $< $(OIDC_UNIT_OBJ) -lcjose -lcjson \
		-lcurl -lsodium -lpthread

# unit tests of the control plane's pure parts, linked with their object alone
CP_UNIT_LIBS_test_throttle = -lpthread
CP_UNIT_LIBS_test_diff     = -lcjson
CP_UNIT_LIBS_test_xml      = -lexpat
CP_UNIT_LIBS_test_worker   = -lpthread

$(B)/unit/test_throttle: t/unit/test_throttle.c $(B)/control-plane/throttle.o t/unit/unit.h
$(B)/unit/test_diff: t/unit/test_diff.c $(B)/control-plane/diff.o t/unit/unit.h
$(B)/unit/test_xml: t/unit/test_xml.c $(B)/control-plane/xml.o t/unit/unit.h
$(B)/unit/test_batch_pace: t/unit/test_batch_pace.c $(B)/control-plane/batch_pace.o t/unit/unit.h
$(B)/unit/test_worker: t/unit/test_worker.c $(B)/control-plane/worker.o \
    $(B)/control-plane/log.o t/unit/unit.h
# prices.c with its database and libpq calls answered by the test
$(B)/unit/test_prices: t/unit/test_prices.c $(B)/control-plane/prices.o \
    $(B)/control-plane/log.o t/unit/unit.h

$(B)/unit/test_throttle $(B)/unit/test_diff $(B)/unit/test_xml $(B)/unit/test_worker \
    $(B)/unit/test_prices $(B)/unit/test_batch_pace:
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Icontrol-plane -It/unit -o $@ $< $(filter %.o,$^) \
	    $(CP_UNIT_LIBS_$(notdir $@))

# Runs every unit test; each prints "N passed, N failed" and fails non-zero.
unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

# libFuzzer targets (clang), built with AddressSanitizer and UBSan.
$(B)/fuzz/%: fuzz/%.c $(LIB_SRC) $(wildcard lib/*.h fuzz/*.h) $(B)/vmx_unicode.h
	@mkdir -p $(dir $@)
	clang -g -O1 -Ilib -Ibuild -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -o $@ $< $(LIB_SRC) -lcrypto -lpcre2-8 -lz -lisal

fuzz: $(FUZZ_BIN)

clean:
	rm -rf $(B)/lib $(B)/control-plane $(B)/tools $(B)/unit $(B)/fuzz $(B)/libvmx.a $(B)/vmx-control-plane
