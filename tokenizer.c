// tokenizer.c — byte-level BPE (tokenizer work fills this in).
#include "gfn.h"
