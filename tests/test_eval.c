// tests/test_eval.c — the shared report pieces of eval.c against hand-written bytes and values:
// the Markdown table header, mean and sample standard deviation, the growing text buffer, the
// sorted listing of a results folder (.txt only; a missing folder is an error naming it), and the
// SVG line plot's coordinates (ends of the axis, the y flip, ± std bars clamped to 0..100 %).
// The arithmetic report, which is built from these, is checked byte for byte in test_arithmetic.c.
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_markdown(void) {
    Text md = { NULL, 0, 0 };
    static const char *const columns[] = { "method", "valid %", "KL" };
    md_table_header(&md, columns, 3);
    CHECK(md.s && !strcmp(md.s, "| method | valid % | KL |\n|---|---|---|\n") && md.len == strlen(md.s), "header: '%s'", md.s);
    free(md.s);

    // Growth past the first allocation keeps every byte.
    Text t = { NULL, 0, 0 };
    char expect[8000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        text_appendf(&t, "%d,", i);
        n += (size_t)sprintf(expect + n, "%d,", i);
    }
    CHECK(t.len == n && !strcmp(t.s, expect), "text buffer: %zu bytes, want %zu", t.len, n);
    free(t.s);

    double mean, std;
    const double x[4] = { 1, 2, 3, 4 };
    mean_std(x, 4, &mean, &std);   // mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    CHECK(mean == 2.5 && fabs(std - sqrt(5.0 / 3.0)) < 1e-12, "mean %g std %g", mean, std);
    mean_std(x, 1, &mean, &std);
    CHECK(mean == 1 && std == 0, "one value: mean %g std %g", mean, std);
    mean_std(x, 0, &mean, &std);
    CHECK(mean == 0 && std == 0, "no value: mean %g std %g", mean, std);
}

static void test_listing(void) {
    const char *dir = "tests_tmp_eval_results";
    static const char *const files[] = { "b_s1.txt", "a_s2.txt", "notes.md", "a_s1.txt", ".txt" };
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        FILE *f = fopen(path, "w");
        if (!f) { CHECK(0, "cannot write %s", path); return; }
        fputs("x\n", f);
        fclose(f);
    }
    char *paths[8];
    GfnError err = { { 0 } };
    int n = report_list_files(dir, paths, 8, &err);
    CHECK(n == 3 && !strcmp(paths[0], "tests_tmp_eval_results/a_s1.txt") && !strcmp(paths[1], "tests_tmp_eval_results/a_s2.txt") &&
          !strcmp(paths[2], "tests_tmp_eval_results/b_s1.txt"), "listing: %d files", n);
    for (int i = 0; i < n; i++) free(paths[i]);
    CHECK(report_list_files("tests_tmp_eval_nowhere", paths, 8, &err) == -1 && strstr(err.msg, "tests_tmp_eval_nowhere"), "missing folder: %s", err.msg);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        remove(path);
    }
    rmdir(dir);
}

static void test_plot(void) {
    // 200 x 140 pixels, margins 20 / 80 / 10 / 30: x runs 20..120, y (fractions 1..0) runs 10..110.
    static const char *const labels[2] = { "lo", "hi" };
    const LinePlot plot = { .width = 200, .height = 140, .left = 20, .right = 80, .top = 10, .bottom = 30, .num_x = 2,
                            .x_labels = labels, .x_title = "X", .y_title = "Y" };
    const double mean[2] = { 0.25, 0.9 }, std[2] = { 0, 0.2 };
    const PlotSeries series = { .name = "m", .slot = 1, .mean = mean, .std = std };
    Text svg = { NULL, 0, 0 };
    svg_line_plot(&svg, &plot, &series, 1);
    CHECK(svg.s && strstr(svg.s, "<svg") == svg.s && strstr(svg.s, "</svg>\n") == svg.s + svg.len - 7, "svg frame");
    // 0.25 -> y = 10 + 0.75 * 100 = 85; 0.9 -> 20; the second point's bar ends at 1.0 (y 10), not 1.1.
    CHECK(strstr(svg.s, "points=\"20.0,85.0 120.0,20.0\"") != NULL, "polyline:\n%s", svg.s);
    CHECK(strstr(svg.s, "<line x1=\"120.0\" y1=\"10.0\" x2=\"120.0\" y2=\"40.0\" stroke=\"#1f77b4\"/>") != NULL, "std bar:\n%s", svg.s);
    CHECK(strstr(svg.s, "x1=\"20.0\" y1=\"85.0\" x2=\"20.0\"") == NULL, "a bar drawn for std 0");
    CHECK(strstr(svg.s, ">lo</text>") && strstr(svg.s, ">hi</text>") && strstr(svg.s, "<text x=\"70.0\" y=\"130\" text-anchor=\"middle\">X</text>"),
          "labels:\n%s", svg.s);
    // slot 1: the second colour, the second legend row (y = 10 + 10 + 18)
    CHECK(strstr(svg.s, "<line x1=\"132\" y1=\"38\" x2=\"152\" y2=\"38\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"158\" y=\"42\">m</text>") != NULL,
          "legend:\n%s", svg.s);
    free(svg.s);
}

void test_eval(void) {
    test_markdown();
    test_listing();
    test_plot();
}
