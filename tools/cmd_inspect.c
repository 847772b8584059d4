/* cmd_inspect.c — `kiln inspect`: prints a model's textual IR and a summary
 * (ops by count, inputs and outputs, parameters, a FLOPs estimate). */
#include "cli.h"
#include "ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
	"usage: kiln inspect MODEL [--summary] [--full-constants] [--shape NAME=DIMS ...]\n"
	"\n"
	"Imports MODEL (.onnx, or textual IR if the name ends in .kir), prints its\n"
	"textual IR and then a summary: inputs and outputs with their types, ops by\n"
	"count with a FLOPs estimate per op, parameter count and bytes, total FLOPs.\n"
	"After the IR the summary lines start with '// ', so the whole output is a\n"
	"valid .kir file.\n"
	"\n"
	"flags:\n"
	"  --summary            print only the summary, not the IR\n"
	"  --full-constants     print every element of every constant (default: large\n"
	"                       constants print as an elided summary)\n"
	"  --shape NAME=DIMS    pin the shape of ONNX input NAME, dims joined by 'x'\n"
	"                       (e.g. --shape input=1x3x224x224); repeatable\n"
	"  -h, --help           print this help\n"
	"\n"
	"FLOPs count multiply and add as two: Conv and ConvTranspose\n"
	"2*N*M*C/group*prod(kernel)*prod(spatial), Gemm and MatMul 2*M*N*K*batch,\n"
	"elementwise ops one per output element, reductions, normalisations and\n"
	"softmax one per input element, pools one per window element, data movement 0.\n"
	"\n"
	"examples:\n"
	"  kiln inspect --summary examples/mlp.onnx\n"
	"  kiln inspect model.onnx --shape input=1x3x224x224 > model.kir\n"
	"\n"
	"Exit status: 0 success, 1 the model could not be loaded, 2 usage error.\n";

/* "1234567" -> "1,234,567". */
static const char *grouped(int64_t v, char *buf, size_t size)
{
	char digits[32];
	int n = snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v));
	size_t len = 0;
	if (v < 0 && len + 1 < size)
		buf[len++] = '-';
	for (int i = 0; i < n && len + 1 < size; i++) {
		if (i && (n - i) % 3 == 0 && len + 2 < size)
			buf[len++] = ',';
		buf[len++] = digits[i];
	}
	buf[len] = '\0';
	return buf;
}

/* "468.4 K", "1.8 G": a count with a metric suffix. */
static const char *metric(int64_t v, char *buf, size_t size)
{
	static const char *const suffix[] = {"", " K", " M", " G", " T", " P", " E"};
	double x = (double)v;
	int s = 0;
	while (x >= 1000 && s < 6) {
		x /= 1000;
		s++;
	}
	if (s)
		snprintf(buf, size, "%.1f%s", x, suffix[s]);
	else
		snprintf(buf, size, "%lld", (long long)v);
	return buf;
}

typedef struct op_row {
	kiln_op op;
	int64_t count, flops;
} op_row;

static int cmp_rows(const void *pa, const void *pb)
{
	const op_row *a = pa, *b = pb;
	if (a->count != b->count)
		return a->count < b->count ? 1 : -1;
	if (a->flops != b->flops)
		return a->flops < b->flops ? 1 : -1;
	return strcmp(kiln_op_name(a->op), kiln_op_name(b->op));
}

static void print_values(const char *pre, const char *title, kiln_value *const *vals, int n)
{
	int width = 4;
	for (int i = 0; i < n; i++) {
		int len = (int)strlen(vals[i]->name);
		if (len > width)
			width = len;
	}
	printf("%s%s:%s\n", pre, title, n ? "" : " none");
	for (int i = 0; i < n; i++) {
		/* Control characters would break the '// ' comment lines. */
		printf("%s  ", pre);
		int len = 0;
		for (const char *c = vals[i]->name; *c; c++, len++)
			putchar((unsigned char)*c < 0x20 || *c == 0x7f ? '?' : *c);
		char ty[160];
		printf("%*s  %s\n", width - len, "", kiln_type_str(&vals[i]->type, ty, sizeof ty));
	}
}

static void print_summary(const char *pre, const char *path, const kiln_graph *g)
{
	printf("%smodel: %s (graph '%s', opset %d)\n", pre, path, g->name ? g->name : "", g->opset);
	print_values(pre, "inputs", g->inputs, g->n_inputs);
	print_values(pre, "outputs", g->outputs, g->n_outputs);

	op_row rows[KILN_OP_COUNT];
	int n_rows = 0;
	int64_t total = 0;
	int width = (int)strlen("total");
	for (int op = 0; op < KILN_OP_COUNT; op++)
		rows[op] = (op_row){.op = (kiln_op)op};
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		int64_t f = kiln_node_flops(n);
		rows[n->op].count++;
		rows[n->op].flops += f;
		total += f;
	}
	for (int op = 0; op < KILN_OP_COUNT; op++) {
		if (!rows[op].count)
			continue;
		rows[n_rows++] = rows[op];
		int len = (int)strlen(kiln_op_name((kiln_op)op));
		if (len > width)
			width = len;
	}
	qsort(rows, (size_t)n_rows, sizeof *rows, cmp_rows);
	char a[48], b[48];
	printf("%sops: %d node%s\n", pre, g->n_nodes, g->n_nodes == 1 ? "" : "s");
	printf("%s  %-*s  %7s  %15s\n", pre, width, "op", "count", "FLOPs");
	for (int i = 0; i < n_rows; i++)
		printf("%s  %-*s  %7lld  %15s\n", pre, width, kiln_op_name(rows[i].op),
		       (long long)rows[i].count, grouped(rows[i].flops, a, sizeof a));
	printf("%s  %-*s  %7d  %15s\n", pre, width, "total", g->n_nodes, grouped(total, a, sizeof a));

	int64_t params = 0, bytes = 0;
	int n_consts = 0;
	for (int i = 0; i < g->n_values; i++) {
		const kiln_value *v = g->values[i];
		if (v->kind != KILN_VALUE_CONST)
			continue;
		n_consts++;
		params += kiln_type_numel(&v->type);
		bytes += (int64_t)kiln_type_bytes(&v->type);
	}
	char c[48];
	printf("%sparameters: %s in %d constant%s (%s bytes)\n", pre, grouped(params, a, sizeof a),
	       n_consts, n_consts == 1 ? "" : "s", grouped(bytes, b, sizeof b));
	printf("%stotal FLOPs: %s (%sFLOP)\n", pre, grouped(total, a, sizeof a),
	       metric(total, c, sizeof c));
}

static int inspect_main(int argc, char **argv)
{
	const char *model = NULL;
	bool summary = false, full = false, only_positional = false;
	kiln_cli_pins pins = {0};
	int rc = KILN_EXIT_OK;
	for (int i = 0; i < argc && rc == KILN_EXIT_OK;) {
		const char *arg = argv[i];
		if (only_positional || arg[0] != '-' || !arg[1]) {
			if (model)
				rc = kiln_cli_usage("inspect", "more than one model given ('%s' and '%s')",
				                    model, arg);
			model = arg;
			i++;
		} else if (!strcmp(arg, "--")) {
			only_positional = true;
			i++;
		} else if (kiln_cli_is_help(arg)) {
			fputs(help, stdout);
			kiln_cli_pins_free(&pins);
			return KILN_EXIT_OK;
		} else if (!strcmp(arg, "--summary")) {
			summary = true;
			i++;
		} else if (!strcmp(arg, "--full-constants")) {
			full = true;
			i++;
		} else if (kiln_cli_shape_flag("inspect", argv, argc, &i, &pins, &rc)) {
			continue;
		} else {
			rc = kiln_cli_usage("inspect", "unknown flag '%s'", arg);
		}
	}
	if (rc == KILN_EXIT_OK && !model)
		rc = kiln_cli_usage("inspect", "no model given");
	kiln_graph *g = NULL;
	if (rc == KILN_EXIT_OK)
		rc = kiln_cli_load("inspect", model, &pins, &g);
	kiln_cli_pins_free(&pins);
	if (rc != KILN_EXIT_OK)
		return rc;

	if (!summary) {
		kiln_print_opts opts = {.full_constants = full};
		char *text = kiln_graph_print(g, &opts);
		if (!text) {
			fprintf(stderr, "%s: out of memory printing the IR\n", model);
			kiln_graph_destroy(g);
			return KILN_EXIT_ERROR;
		}
		fputs(text, stdout);
		free(text);
	}
	/* After the IR the summary is a comment, so the output still parses as .kir. */
	print_summary(summary ? "" : "// ", model, g);
	kiln_graph_destroy(g);
	return KILN_EXIT_OK;
}

const kiln_command kiln_cmd_inspect = {
	.name = "inspect",
	.summary = "print a model's textual IR and a summary (ops, parameters, FLOPs)",
	.help = help,
	.run = inspect_main,
};
