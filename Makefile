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

.PHONY: all test bench run data weights clean
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

# The base model: corpus (gfn.c's recipe; held-out sets listed there) -> BPE tokenizer with 4096
# ids -> GPT-2 pretrained from scratch (4 layers, 4 heads, width 256, context 128: 4.2M
# parameters; 3000 steps of 16 x 128 tokens, about 1.5 passes over its 4.1M tokens). Outputs go to
# weights/ (ignored by git). An interrupted run continues from weights/gpt.bin.state to the same
# bits (delete that file to start over with other flags). Check tokens/s with a short run first
# and set PRETRAIN_STEPS to fit the time you have.
WEIGHTS ?= weights
PRETRAIN_STEPS ?= 3000
PRETRAIN_FLAGS ?= --layers 4 --heads 4 --dim 256 --ctx 128 --batch 16 --steps $(PRETRAIN_STEPS) --warmup 100 \
	--lr 1e-3 --min-lr 1e-4 --weight-decay 0.1 --clip 1 --val-frac 0.01 --eval-every 250 --eval-chunks 64 \
	--save-every 100 --seed 1337
weights: gfn
	mkdir -p $(WEIGHTS)
	./gfn corpus -d $(SHARED_DATA) -o $(WEIGHTS)/corpus.txt --seed 1
	./gfn tokenizer train -i $(WEIGHTS)/corpus.txt -V 4096 -o $(WEIGHTS)/tokenizer.bin
	./gfn pretrain -t $(WEIGHTS)/tokenizer.bin -i $(WEIGHTS)/corpus.txt -o $(WEIGHTS)/gpt.bin $(PRETRAIN_FLAGS) \
		--log $(WEIGHTS)/pretrain.jsonl --eval-file $(SHARED_DATA)/stories/storycloze_val_5sent.txt $(if $(wildcard $(WEIGHTS)/gpt.bin.state),--resume $(WEIGHTS)/gpt.bin.state)

# Speed and memory figures of this machine (see tests/bench_*.c).
tests/bench: $(SRC) $(HDR) $(BENCH_SRC)
	$(CC) $(CFLAGS) $(WARN) -DGFN_NO_MAIN -o $@ $(SRC) $(BENCH_SRC) $(LDFLAGS) $(LDLIBS)

bench: tests/bench
	./tests/bench

clean:
	rm -f gfn tests/run_tests tests/bench
