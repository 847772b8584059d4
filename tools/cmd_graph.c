/* cmd_graph.c — `kiln graph`: draws a model's graph after the passes with
 * Graphviz, to see at a glance what got fused. One box per node (op, name,
 * and its constant inputs as notes), graph inputs and outputs as ellipses,
 * edges labelled with the tensor type, and each fusion node as a cluster
 * coloured by its kind holding its body's nodes. A .dot file is written
 * directly; .svg and .png go through Graphviz's `dot`. */
#include "cli.h"
#include "interp.h"
#include "ir.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char help[] =
	"usage: kiln graph MODEL [-O0..3 | --passes=a,b,...] [--disable-pass=NAME,...]\n"
	"                  [--shape NAME=DIMS ...] -o FILE.svg|FILE.png|FILE.dot\n"
	"\n"
	"Imports MODEL (.onnx, or textual IR if the name ends in .kir), runs the same\n"
	"passes as `kiln opt` and draws the resulting graph: one box per node, graph\n"
	"inputs and outputs as ellipses, edges labelled with the tensor type, and\n"
	"each fusion node as a coloured cluster (by kind) holding the nodes it fused.\n"
	"Constant inputs (weights) are listed inside the box of the node using them.\n"
	"\n"
	"flags:\n"
	"  -o FILE                the picture to write; its extension picks the format:\n"
	"                         .dot (Graphviz source, written directly), .svg or\n"
	"                         .png (rendered by Graphviz's `dot`)\n"
	"  -O0 .. -O3             run that level's pipeline (default -O2)\n"
	"  --passes=a,b,...       run exactly these passes, in this order\n"
	"  --disable-pass=a,...   skip these passes\n"
	"  --shape NAME=DIMS      pin the shape of ONNX input NAME (e.g. input=1x3x224x224)\n"
	"  -h, --help             print this help\n"
	"\n"
	"examples:\n"
	"  kiln graph model.onnx -o model.svg\n"
	"  kiln graph model.onnx -O0 -o unfused.dot\n"
	"\n"
	"Exit status: 0 success, 1 the model could not be loaded, a pass failed or\n"
	"the picture could not be made (no `dot`: install graphviz), 2 usage error.\n";

typedef enum graph_format {
	GRAPH_DOT,
	GRAPH_SVG,
	GRAPH_PNG,
	GRAPH_FORMAT_COUNT
} graph_format;

static const char *const format_ext[] = {".dot", ".svg", ".png"};
_Static_assert(sizeof format_ext / sizeof *format_ext == GRAPH_FORMAT_COUNT, "format_ext");

/* Cluster fill and border colour of each fusion kind. */
static const char *const kind_colour[][2] = {
	[KILN_FUSION_NONE] = {"#eeeeee", "#888888"},
	[KILN_FUSION_LOOP] = {"#dbe8f8", "#4a78b0"},
	[KILN_FUSION_OUTPUT] = {"#fde6cc", "#c7782a"},
	[KILN_FUSION_REDUCTION] = {"#dff1da", "#4c9444"},
};
_Static_assert(sizeof kind_colour / sizeof *kind_colour == KILN_FUSION_KIND_COUNT, "kind_colour");

/* Constants with at most this many elements show their values. */
enum { SMALL_CONST = 4 };
/* From about this many boxes dot takes seconds: say so on a terminal. */
enum { SLOW_LAYOUT = 500 };

/* ---- escaping ------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s, 0 if it is not one. */
static int utf8_len(const unsigned char *s)
{
	if (s[0] < 0x80)
		return 1;
	int n;
	unsigned lo = 0x80, hi = 0xbf; /* range of the second byte */
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, lo = s[0] == 0xe0 ? 0xa0 : 0x80, hi = s[0] == 0xed ? 0x9f : 0xbf;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, lo = s[0] == 0xf0 ? 0x90 : 0x80, hi = s[0] == 0xf4 ? 0x8f : 0xbf;
	else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

typedef enum esc_mode {
	ESC_QUOTED, /* inside a "..." DOT string used as a label */
	ESC_HTML,   /* inside an HTML-like <...> label */
} esc_mode;

/* Writes s so that Graphviz shows it as is: control characters and bytes
 * that are not UTF-8 appear as \xNN. Both kinds of label turn \N, \G, ...
 * into the node's or graph's name (HTML-like ones after decoding entities)
 * and "\\" into one backslash, so a backslash is doubled in both. */
static void put_esc(FILE *f, const char *s, esc_mode m)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = utf8_len(p);
		if (!n || *p < 0x20 || *p == 0x7f) {
			fprintf(f, "\\\\x%02x", *p);
			p++;
			continue;
		}
		if (n > 1) {
			fwrite(p, 1, (size_t)n, f);
			p += n;
			continue;
		}
		const char *rep = *p == '\\' ? "\\\\" : NULL;
		if (m == ESC_QUOTED && *p == '"')
			rep = "\\\"";
		else if (m == ESC_HTML)
			rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;"
			    : *p == '"' ? "&quot;" : rep;
		if (rep)
			fputs(rep, f);
		else
			fputc(*p, f);
		p++;
	}
}

/* ---- the DOT text ---------------------------------------------------------- */

/* Where a node input comes from: a drawn node (its DOT id), or a constant,
 * which is not drawn but noted in the consumer's box. */
typedef struct source {
	char id[48];
	const kiln_value *cst;
} source;

/* Resolves v, a value of the outer graph (fusion NULL) or of fusion's body.
 * A body input is the fusion's matching input; a fusion's output is its
 * body's matching output: edges run between the nodes that are drawn. */
static bool resolve(const kiln_value *v, const kiln_node *fusion, source *s)
{
	s->id[0] = '\0';
	s->cst = NULL;
	if (v->kind == KILN_VALUE_CONST) {
		s->cst = v;
		return true;
	}
	if (fusion) {
		const kiln_graph *b = fusion->body;
		if (v->kind == KILN_VALUE_INPUT) {
			for (int k = 0; k < b->n_inputs && k < fusion->n_inputs; k++)
				if (b->inputs[k] == v && fusion->inputs[k])
					return resolve(fusion->inputs[k], NULL, s);
			return false; /* unbound: the verifier rejects it */
		}
		snprintf(s->id, sizeof s->id, "f%d_%d", fusion->id, v->producer->id);
		return true;
	}
	if (v->kind == KILN_VALUE_INPUT) {
		snprintf(s->id, sizeof s->id, "i%d", v->id);
		return true;
	}
	const kiln_node *p = v->producer;
	if (p->op == KILN_OP_FUSION) {
		if (!p->body || v->index >= p->body->n_outputs)
			return false;
		return resolve(p->body->outputs[v->index], p, s);
	}
	snprintf(s->id, sizeof s->id, "n%d", p->id);
	return true;
}

/* " = 6" or " = [0, 6]": the values of a constant of at most SMALL_CONST
 * elements (nothing for a larger one). */
static void put_small_values(FILE *f, const kiln_value *c)
{
	kiln_tensor t = {c->type, c->data};
	int64_t n = kiln_type_numel(&c->type);
	if (!c->data || n > SMALL_CONST)
		return;
	fputs(n == 1 && c->type.rank == 0 ? " = " : " = [", f);
	for (int64_t i = 0; i < n; i++) {
		if (i)
			fputs(", ", f);
		if (kiln_dtype_is_float(c->type.dtype))
			fprintf(f, "%g", kiln_tensor_get_f64(&t, i));
		else
			fprintf(f, "%lld", (long long)kiln_tensor_get_i64(&t, i));
	}
	if (!(n == 1 && c->type.rank == 0))
		fputc(']', f);
}

static void put_type(FILE *f, const kiln_type *t)
{
	char buf[256];
	fputs(kiln_type_str(t, buf, sizeof buf), f);
}

/* One node's box: op in bold, its name, a line per constant input. */
static void put_node(FILE *f, const kiln_node *n, const kiln_node *fusion)
{
	if (fusion)
		fprintf(f, "    f%d_%d", fusion->id, n->id);
	else
		fprintf(f, "  n%d", n->id);
	fputs(" [label=<<B>", f);
	put_esc(f, kiln_op_name(n->op), ESC_HTML);
	fputs("</B><BR/>", f);
	put_esc(f, n->name, ESC_HTML);
	for (int i = 0; i < n->n_inputs; i++) {
		source s;
		if (!n->inputs[i] || !resolve(n->inputs[i], fusion, &s) || !s.cst)
			continue;
		fputs("<BR/><FONT POINT-SIZE=\"8\" COLOR=\"#555555\">", f);
		put_esc(f, s.cst->name, ESC_HTML);
		fputc(' ', f);
		put_type(f, &s.cst->type);
		put_small_values(f, s.cst);
		fputs("</FONT>", f);
	}
	fputc('>', f);
	if (n->origin && strcmp(n->origin, n->name)) {
		fputs(", tooltip=\"from ", f);
		put_esc(f, n->origin, ESC_QUOTED);
		fputc('"', f);
	}
	fputs("];\n", f);
}

/* The edges into n's non-constant inputs, labelled with their types. */
static void put_in_edges(FILE *f, const kiln_node *n, const kiln_node *fusion)
{
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		source s;
		if (!v || !resolve(v, fusion, &s) || s.cst)
			continue;
		fprintf(f, "  %s -> ", s.id);
		if (fusion)
			fprintf(f, "f%d_%d", fusion->id, n->id);
		else
			fprintf(f, "n%d", n->id);
		fputs(" [label=\"", f);
		put_type(f, &v->type);
		fputs("\", tooltip=\"", f);
		put_esc(f, v->name, ESC_QUOTED);
		fputs("\"];\n", f);
	}
}

/* A graph input or output: name and type in an ellipse. */
static void put_io(FILE *f, const char *id, const kiln_value *v, bool output)
{
	fprintf(f, "  %s [shape=ellipse, %s, label=<<B>", id,
	        output ? "peripheries=2, fillcolor=\"#f6dada\"" : "fillcolor=\"#d8f0dc\"");
	put_esc(f, v->name, ESC_HTML);
	fputs("</B><BR/>", f);
	put_type(f, &v->type);
	fputs(">];\n", f);
}

typedef struct graph_counts {
	int nodes;                             /* outside fusions */
	int fusions[KILN_FUSION_KIND_COUNT];
	int fused;                             /* nodes inside fusions */
} graph_counts;

static void count_nodes(const kiln_graph *g, graph_counts *c)
{
	memset(c, 0, sizeof *c);
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		if (n->op == KILN_OP_FUSION && n->body) {
			c->fusions[kiln_node_fusion_kind(n)]++;
			c->fused += n->body->n_nodes;
		} else {
			c->nodes++;
		}
	}
}

/* The title: graph name, the passes run, what got fused. */
static void put_title(FILE *f, const kiln_graph *g, const char *pipeline, const graph_counts *c)
{
	int total = 0;
	for (int k = 0; k < KILN_FUSION_KIND_COUNT; k++)
		total += c->fusions[k];
	fputs("  label=<<B>", f);
	put_esc(f, g->name ? g->name : "graph", ESC_HTML);
	fputs("</B> ", f);
	put_esc(f, pipeline, ESC_HTML);
	fprintf(f, "<BR/>%d node%s outside fusions; %d fusion%s", c->nodes, c->nodes == 1 ? "" : "s",
	        total, total == 1 ? "" : "s");
	const char *sep = " (";
	for (int k = 0; k < KILN_FUSION_KIND_COUNT; k++) {
		if (!c->fusions[k])
			continue;
		fprintf(f, "%s%d %s", sep, c->fusions[k],
		        k == KILN_FUSION_NONE ? "of no kind" : kiln_fusion_kind_name(k));
		sep = ", ";
	}
	if (total)
		fprintf(f, ") holding %d node%s", c->fused, c->fused == 1 ? "" : "s");
	fputs(">;\n", f);
}

static void put_fusion(FILE *f, const kiln_node *n)
{
	kiln_fusion_kind k = kiln_node_fusion_kind(n);
	fprintf(f, "  subgraph cluster_%d {\n"
	           "    style=\"rounded,filled\"; fillcolor=\"%s\"; color=\"%s\"; penwidth=1.5;\n"
	           "    label=<<B>%s%sfusion</B><BR/>",
	        n->id, kind_colour[k][0], kind_colour[k][1],
	        k == KILN_FUSION_NONE ? "" : kiln_fusion_kind_name(k),
	        k == KILN_FUSION_NONE ? "" : " ");
	put_esc(f, n->name, ESC_HTML);
	fputs(">;\n", f);
	for (int j = 0; j < n->body->n_nodes; j++)
		put_node(f, n->body->nodes[j], n);
	fputs("  }\n", f);
}

/* Writes the DOT text of g into a malloc'd string (*out, *len); false on OOM. */
static bool graph_to_dot(const kiln_graph *g, const char *pipeline, const graph_counts *counts,
                         char **out, size_t *len)
{
	FILE *f = open_memstream(out, len);
	if (!f)
		return false;
	fputs("digraph kiln {\n"
	      "  graph [fontname=\"Helvetica\", fontsize=11, labelloc=t, nodesep=0.25, "
	      "ranksep=0.3];\n"
	      "  node [shape=box, style=\"rounded,filled\", fillcolor=white, color=\"#555555\", "
	      "fontname=\"Helvetica\", fontsize=10, margin=\"0.1,0.03\"];\n"
	      "  edge [fontname=\"Helvetica\", fontsize=8, color=\"#666666\", "
	      "fontcolor=\"#444444\", arrowsize=0.6];\n",
	      f);
	put_title(f, g, pipeline, counts);
	for (int i = 0; i < g->n_inputs; i++) {
		char id[32];
		snprintf(id, sizeof id, "i%d", g->inputs[i]->id);
		put_io(f, id, g->inputs[i], false);
	}
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		if (n->op == KILN_OP_FUSION && n->body)
			put_fusion(f, n);
		else
			put_node(f, n, NULL);
	}
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		if (n->op == KILN_OP_FUSION && n->body)
			for (int j = 0; j < n->body->n_nodes; j++)
				put_in_edges(f, n->body->nodes[j], n);
		else
			put_in_edges(f, n, NULL);
	}
	for (int i = 0; i < g->n_outputs; i++) {
		const kiln_value *v = g->outputs[i];
		char id[32];
		snprintf(id, sizeof id, "o%d", i);
		put_io(f, id, v, true);
		source s;
		if (!resolve(v, NULL, &s))
			continue;
		if (s.cst) {
			/* a constant output: the one constant drawn as a node */
			snprintf(s.id, sizeof s.id, "c%d", i);
			fprintf(f, "  %s [shape=note, label=<", s.id);
			put_esc(f, s.cst->name, ESC_HTML);
			fputc(' ', f);
			put_type(f, &s.cst->type);
			put_small_values(f, s.cst);
			fputs(">];\n", f);
		}
		fprintf(f, "  %s -> %s [label=\"", s.id, id);
		put_type(f, &v->type);
		fputs("\"];\n", f);
	}
	fputs("}\n", f);
	bool ok = !ferror(f);
	if (fclose(f) != 0)
		ok = false;
	if (!ok) {
		free(*out);
		*out = NULL;
	}
	return ok;
}

/* ---- writing the file ------------------------------------------------------ */

/* A temp name beside path ("dir/.name.XXXXXX"), opened; -1 on failure. */
static int open_temp(const char *path, char **tmp)
{
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;
	size_t size = strlen(path) + 16;
	*tmp = malloc(size);
	if (!*tmp) {
		errno = ENOMEM;
		return -1;
	}
	snprintf(*tmp, size, "%.*s.%s.XXXXXX", dir_len, path, slash ? slash + 1 : path);
	int fd = mkstemp(*tmp);
	if (fd < 0) {
		int e = errno;
		free(*tmp);
		*tmp = NULL;
		errno = e;
	}
	return fd;
}

static bool write_all(int fd, const char *p, size_t left)
{
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		left -= (size_t)w;
	}
	return true;
}

/* Finds the `dot` program on PATH (its path into buf). */
static bool find_dot(char *buf, size_t size)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (const char *p = path;; p++) {
		size_t len = strcspn(p, ":");
		struct stat st;
		snprintf(buf, size, "%.*s/dot", (int)(len ? len : 1), len ? p : ".");
		if (stat(buf, &st) == 0 && S_ISREG(st.st_mode) && access(buf, X_OK) == 0)
			return true;
		p += len;
		if (!*p)
			return false;
	}
}

/* Runs `dot -T<fmt>` with the DOT text on its stdin and its stdout into fd.
 * Returns true on success; otherwise why (a message) in msg. */
static bool run_dot(const char *dot, graph_format fmt, const char *text, size_t len, int fd,
                    char *msg, size_t size)
{
	FILE *errf = tmpfile(); /* dot's stderr: its first line goes into our message */
	int in[2];
	if (!errf || pipe(in) != 0) {
		snprintf(msg, size, "cannot run %s: %s", dot, strerror(errno));
		if (errf)
			fclose(errf);
		return false;
	}
	char flag[8];
	snprintf(flag, sizeof flag, "-T%s", format_ext[fmt] + 1);
	char *argv[] = {(char *)dot, flag, NULL};
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, fd, 1);
	posix_spawn_file_actions_adddup2(&fa, fileno(errf), 2);
	posix_spawn_file_actions_addclose(&fa, in[1]);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigdefault(&attr, &def);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
	pid_t pid;
	int rc = posix_spawn(&pid, dot, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(in[0]);
	if (rc != 0) {
		close(in[1]);
		fclose(errf);
		snprintf(msg, size, "cannot run %s: %s", dot, strerror(rc));
		return false;
	}
	/* SIGPIPE is ignored (graph_main): if dot stops reading, its exit says why */
	write_all(in[1], text, len);
	close(in[1]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			status = -1;
			break;
		}
	char line[512] = "";
	rewind(errf);
	if (!fgets(line, sizeof line, errf))
		line[0] = '\0';
	line[strcspn(line, "\n")] = '\0';
	bool ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	struct stat st;
	if (ok && (fstat(fd, &st) != 0 || st.st_size == 0)) {
		ok = false;
		snprintf(msg, size, "%s -T%s wrote nothing%s%s", dot, format_ext[fmt] + 1,
		         line[0] ? ": " : "", line);
	} else if (ok) {
		/* warnings (e.g. a PNG scaled down to fit): pass them on */
		rewind(errf);
		char chunk[512];
		size_t r;
		while ((r = fread(chunk, 1, sizeof chunk, errf)) > 0)
			fwrite(chunk, 1, r, stderr);
	} else if (status != -1 && WIFEXITED(status)) {
		snprintf(msg, size, "%s -T%s failed (exit %d)%s%s", dot, format_ext[fmt] + 1,
		         WEXITSTATUS(status), line[0] ? ": " : "", line);
	} else {
		snprintf(msg, size, "%s -T%s was killed%s%s", dot, format_ext[fmt] + 1,
		         line[0] ? ": " : "", line);
	}
	fclose(errf);
	return ok;
}

/* Writes the picture to path through a temp file renamed on success. */
static int write_picture(const char *path, graph_format fmt, const char *dot, const char *text,
                         size_t len)
{
	char *tmp;
	int fd = open_temp(path, &tmp);
	if (fd < 0) {
		fprintf(stderr, "%s: cannot create: %s\n", path, strerror(errno));
		return KILN_EXIT_ERROR;
	}
	char msg[1024] = "";
	bool ok;
	if (fmt == GRAPH_DOT) {
		ok = write_all(fd, text, len);
		if (!ok)
			snprintf(msg, sizeof msg, "cannot write: %s", strerror(errno));
	} else {
		ok = run_dot(dot, fmt, text, len, fd, msg, sizeof msg);
	}
	fchmod(fd, 0644);
	if (close(fd) != 0 && ok) {
		ok = false;
		snprintf(msg, sizeof msg, "cannot write: %s", strerror(errno));
	}
	if (ok && rename(tmp, path) != 0) {
		ok = false;
		snprintf(msg, sizeof msg, "cannot write: %s", strerror(errno));
	}
	if (!ok) {
		unlink(tmp);
		fprintf(stderr, "%s: %s\n", path, msg);
	}
	free(tmp);
	return ok ? KILN_EXIT_OK : KILN_EXIT_ERROR;
}

/* ---- the command ------------------------------------------------------------- */

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n > m && !strcmp(s + n - m, suffix);
}

static int graph_main(int argc, char **argv)
{
	const char *model = NULL, *out = NULL;
	kiln_opt_opts oo = {.opt_level = 2};
	bool only_positional = false;
	kiln_cli_pins pins = {0};
	int rc = KILN_EXIT_OK;
	for (int i = 0; i < argc && rc == KILN_EXIT_OK;) {
		const char *arg = argv[i];
		if (only_positional || arg[0] != '-' || !arg[1]) {
			if (model)
				rc = kiln_cli_usage("graph", "more than one model given ('%s' and '%s')",
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
		} else if (!strcmp(arg, "-o")) {
			if (i + 1 >= argc || !argv[i + 1][0])
				rc = kiln_cli_usage("graph", "-o needs a file name");
			else
				out = argv[i + 1];
			i += 2;
		} else if (kiln_cli_pass_flag("graph", argv, argc, &i, &oo, &rc)) {
			continue;
		} else if (kiln_cli_shape_flag("graph", argv, argc, &i, &pins, &rc)) {
			continue;
		} else {
			rc = kiln_cli_usage("graph", "unknown flag '%s'", arg);
		}
	}
	if (rc == KILN_EXIT_OK && !model)
		rc = kiln_cli_usage("graph", "no model given");
	if (rc == KILN_EXIT_OK && !out)
		rc = kiln_cli_usage("graph", "no output file given (-o FILE.svg, .png or .dot)");
	graph_format fmt = GRAPH_FORMAT_COUNT;
	for (int k = 0; rc == KILN_EXIT_OK && k < GRAPH_FORMAT_COUNT; k++)
		if (ends_with(out, format_ext[k]))
			fmt = (graph_format)k;
	if (rc == KILN_EXIT_OK && fmt == GRAPH_FORMAT_COUNT)
		rc = kiln_cli_usage("graph", "-o '%s': unknown picture format; name the file "
		                    "*.svg, *.png or *.dot", out);
	if (rc != KILN_EXIT_OK) {
		kiln_cli_pins_free(&pins);
		return rc;
	}
	if ((rc = kiln_cli_check_passes("graph", &oo)) != KILN_EXIT_OK) {
		kiln_cli_pins_free(&pins);
		return rc;
	}
	/* no Graphviz: say so before the model is read */
	char dot[4096] = "";
	if (fmt != GRAPH_DOT && !find_dot(dot, sizeof dot)) {
		kiln_cli_pins_free(&pins);
		fprintf(stderr, "%s: cannot render %s: Graphviz's 'dot' is not on PATH; install "
		        "graphviz (apt-get install graphviz), or write a .dot file\n",
		        out, fmt == GRAPH_SVG ? "SVG" : "PNG");
		return KILN_EXIT_ERROR;
	}
	kiln_graph *g = NULL;
	rc = kiln_cli_load("graph", model, &pins, &g);
	kiln_cli_pins_free(&pins);
	if (rc != KILN_EXIT_OK)
		return rc;
	kiln_diag d;
	kiln_diag_init(&d, model);
	if (kiln_optimize(g, &oo, &d) != KILN_OK) {
		kiln_graph_destroy(g);
		return KILN_EXIT_ERROR;
	}
	char pipeline[512];
	if (oo.passes)
		snprintf(pipeline, sizeof pipeline, "--passes=%s", oo.passes);
	else
		snprintf(pipeline, sizeof pipeline, "-O%d", oo.opt_level);
	if (oo.disable)
		snprintf(pipeline + strlen(pipeline), sizeof pipeline - strlen(pipeline),
		         " --disable-pass=%s", oo.disable);
	graph_counts counts;
	count_nodes(g, &counts);
	int boxes = counts.nodes + counts.fused + g->n_inputs + g->n_outputs;
	char *text = NULL;
	size_t len = 0;
	bool ok = graph_to_dot(g, pipeline, &counts, &text, &len);
	kiln_graph_destroy(g);
	if (!ok) {
		fprintf(stderr, "%s: out of memory writing the graph\n", out);
		return KILN_EXIT_ERROR;
	}
	if (fmt != GRAPH_DOT && boxes >= SLOW_LAYOUT && isatty(STDERR_FILENO))
		fprintf(stderr, "%s: laying out %d boxes with dot, which takes a while...\n",
		        out, boxes);
	signal(SIGPIPE, SIG_IGN);
	rc = write_picture(out, fmt, dot, text, len);
	free(text);
	return rc;
}

const kiln_command kiln_cmd_graph = {
	.name = "graph",
	.summary = "draw the optimised graph, fusions as clusters (SVG, PNG or DOT)",
	.help = help,
	.run = graph_main,
};
