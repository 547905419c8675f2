# gfn.c — build, test, bench. Only a C compiler and make are needed.
#   make            build ./gfn            make OMP=0     build without OpenMP
#   make test       run every test         make CC=clang  build with clang
#   make bench      print the speed table  make run       the main job
CC ?= cc
OMP ?= 1
ARCH ?= -march=native
CFLAGS ?= -O3 $(ARCH)
WARN = -std=c11 -Wall -Wextra -pedantic
LDLIBS = -lm
ifeq ($(OMP),1)
  CFLAGS += -fopenmp
  LDFLAGS += -fopenmp
else
  WARN += -Wno-unknown-pragmas
endif

SRC = model.c tokenizer.c gfn.c $(wildcard tasks/*.c)
HDR = gfn.h
TEST_SRC = $(wildcard tests/test_*.c)
BENCH_SRC = $(wildcard tests/bench_*.c)

.PHONY: all test bench run data clean
all: gfn

gfn: $(SRC) $(HDR)
	$(CC) $(CFLAGS) $(WARN) -o $@ $(SRC) $(LDFLAGS) $(LDLIBS)

# The test runner links the same sources without gfn.c's main().
tests/run_tests: $(SRC) $(HDR) $(TEST_SRC) tests/test.h
	$(CC) $(CFLAGS) $(WARN) -DGFN_NO_MAIN -o $@ $(SRC) $(TEST_SRC) $(LDFLAGS) $(LDLIBS)

test: gfn tests/run_tests
	./tests/run_tests

# Copies the shared datasets into an ignored data/ folder (CI does this first).
SHARED_DATA ?= ../shared/data
data:
	@if [ -d "$(SHARED_DATA)" ]; then mkdir -p data && cp -R $(SHARED_DATA)/. data/ && chmod -R u+w data && echo "data/ copied from $(SHARED_DATA)"; \
	else echo "no $(SHARED_DATA): tests that need the datasets will skip"; fi

# Speed and memory figures of this machine (see tests/bench_*.c).
tests/bench: $(SRC) $(HDR) $(BENCH_SRC)
	$(CC) $(CFLAGS) $(WARN) -DGFN_NO_MAIN -o $@ $(SRC) $(BENCH_SRC) $(LDFLAGS) $(LDLIBS)

bench: tests/bench
	./tests/bench

clean:
	rm -f gfn tests/run_tests tests/bench
