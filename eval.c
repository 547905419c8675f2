// eval.c — evaluation that several tasks share. Depends on util.c only.
#include "gfn.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------------------------
// --- Markdown tables and SVG plots
//
// A task's report (`gfn report TASK DIR OUT`) reads a folder of result files, one run each, and
// writes OUT.md (tables of mean ± std over seeds) and OUT.svg (a line plot). The pieces that do
// not depend on the task live here: the folder listing, the statistics, the text buffer, the
// Markdown table header and the plot.

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int report_list_files(const char *dir, char **paths, int max, GfnError *err) {
    DIR *d = opendir(dir);
    if (!d) { gfn_error_set(err, "%s: cannot open the results folder", dir); return -1; }
    int count = 0;
    for (struct dirent *e; (e = readdir(d)) && count < max;) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".txt")) {
            paths[count] = gfn_malloc(strlen(dir) + l + 2);
            sprintf(paths[count++], "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    qsort(paths, (size_t)count, sizeof(char *), cmp_str);   // readdir's order is the file system's
    return count;
}

void mean_std(const double *x, int n, double *mean, double *std) {
    double s = 0, ss = 0;
    for (int i = 0; i < n; i++) s += x[i];
    *mean = n ? s / n : 0;
    for (int i = 0; i < n; i++) ss += (x[i] - *mean) * (x[i] - *mean);
    *std = n > 1 ? sqrt(ss / (n - 1)) : 0;
}

void text_appendf(Text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (t->len + (size_t)need + 1 > t->cap) {
        t->cap = 2 * (t->len + (size_t)need + 1);
        char *grown = realloc(t->s, t->cap);
        if (!grown) { fprintf(stderr, "gfn: out of memory\n"); exit(1); }
        t->s = grown;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)need;
}

void md_table_header(Text *md, const char *const *columns, int num_columns) {
    text_appendf(md, "|");
    for (int c = 0; c < num_columns; c++) text_appendf(md, " %s |", columns[c]);
    text_appendf(md, "\n|");
    for (int c = 0; c < num_columns; c++) text_appendf(md, "---|");
    text_appendf(md, "\n");
}

void svg_line_plot(Text *svg, const LinePlot *p, const PlotSeries *series, int num_series) {
    static const char *const colors[] = { "#777777", "#1f77b4", "#d62728", "#9467bd", "#2ca02c", "#ff7f0e", "#8c564b", "#e377c2" };
    const int W = p->width, H = p->height, left = p->left, right = p->right, top = p->top, bottom = p->bottom;
    text_appendf(svg, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H);
    text_appendf(svg, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    #define PX(s) (left + (s) * (W - left - right) / (double)(p->num_x - 1))
    #define PY(a) (top + (1.0 - (a)) * (H - top - bottom))
    for (int g = 0; g <= 100; g += 20) {
        text_appendf(svg, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", left, PY(g / 100.0), W - right, PY(g / 100.0));
        text_appendf(svg, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n", left - 6, PY(g / 100.0) + 4, g);
    }
    for (int s = 0; s < p->num_x; s++)
        text_appendf(svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", PX(s), H - bottom + 18, p->x_labels[s]);
    text_appendf(svg, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", left + (W - left - right) / 2.0, H - 10, p->x_title);
    text_appendf(svg, "<text x=\"14\" y=\"%.1f\" transform=\"rotate(-90 14 %.1f)\" text-anchor=\"middle\">%s</text>\n", PY(0.5), PY(0.5), p->y_title);
    for (int i = 0; i < num_series; i++) {
        const PlotSeries *ps = &series[i];
        const char *c = colors[ps->slot % 8];
        const double *mean = ps->mean, *std = ps->std;
        text_appendf(svg, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", c);
        for (int s = 0; s < p->num_x; s++) text_appendf(svg, "%s%.1f,%.1f", s ? " " : "", PX(s), PY(mean[s]));
        text_appendf(svg, "\"/>\n");
        for (int s = 0; s < p->num_x; s++) {
            text_appendf(svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", PX(s), PY(mean[s]), c);
            if (std[s] > 0)
                text_appendf(svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n",
                            PX(s), PY(fmin(1, mean[s] + std[s])), PX(s), PY(fmax(0, mean[s] - std[s])), c);
        }
        text_appendf(svg, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>"
                         "<text x=\"%d\" y=\"%d\">%s</text>\n",
                    W - right + 12, top + 10 + 18 * ps->slot, W - right + 32, top + 10 + 18 * ps->slot, c, W - right + 38, top + 14 + 18 * ps->slot, ps->name);
    }
    #undef PX
    #undef PY
    text_appendf(svg, "</svg>\n");
}
