// tests/test.h — the tiny test harness shared by every tests/test_*.c file.
// Each file defines `void test_NAME(void)` and registers it in tests/runner.c. CHECK records
// a pass or a failure with its location; SKIP says why a test could not run (missing data).
#ifndef GFN_TEST_H
#define GFN_TEST_H
#include "../gfn.h"
#include <math.h>
#include <stdio.h>

extern int tests_passed, tests_failed, tests_skipped;
// Counts one check; on failure prints the condition, the place and a printf-style explanation.
int test_check(int ok, const char *cond, const char *file, int line, const char *fmt, ...);
void test_skip(const char *name, const char *why);
// Directory of the shared data (../shared/data or $GFN_DATA or ./data), or NULL when absent.
const char *test_data_dir(void);
// This run's own scratch directory (tests_tmp_XXXXXX, made by mkdtemp, removed at the end) and
// a path NAME inside it (the same string for the run's whole length).
const char *test_tmp_dir(void);
const char *test_path(const char *name);

#define CHECK(cond, ...) test_check(!!(cond), #cond, __FILE__, __LINE__, __VA_ARGS__)
// The larger of two numbers, for running maxima: `worst = larger(worst, fabs(got - want))`.
// Not fmax: GCC 12's aarch64 compiler stops with an internal compiler error
// (vect_transform_reduction) when it vectorises an fmax reduction at -O3. A NaN difference is
// ignored as fmax ignores it (the comparison is false), so a running maximum starting at 0 is the same.
static inline double larger(double a, double b) { return b > a ? b : a; }
// |a - b| <= tol * max(1, |b|) style helpers are written where used; keep tolerances explicit.
#endif
