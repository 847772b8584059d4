/* cmd_run_check.c — `kiln run MODEL --check`: the numerics bisector.
 *
 * The model's optimised graph (the -O pipeline, as kiln compile makes it) is
 * compiled once more with every kernel's output exposed as a graph output,
 * run through libkiln_rt, and compared kernel by kernel, in execution order,
 * with the reference interpreter running the same optimised graph (a fusion
 * node's reference is its body, interpreted). The first kernel whose output
 * leaves tolerance is reported with its members and ONNX source nodes; with
 * --dump DIR its inputs are written as .npy and the node as a one-node .kir,
 * a minimal reproducer. The compiled graph outputs are also compared with
 * the interpreter on the original, unoptimised graph, which catches a pass
 * that changed the meaning. */
#include "cli.h"
#include "interp_session.h"
#include "ir.h"
#include "kiln_rt.h"
#include "npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* One compared tensor: the worst element against atol + rtol * |ref|. */
typedef struct diff {
	double max_abs, max_rel, ref, got;
	int64_t at, bad; /* worst index; elements out of tolerance */
} diff;

static diff compare(const kiln_tensor *ref, const void *got, double rtol, double atol)
{
	/* 16-bit floats carry 8 to 11 bits: their kernels round differently */
	if (ref->type.dtype == KILN_DT_F16 || ref->type.dtype == KILN_DT_BF16)
		rtol = rtol > 1e-2 ? rtol : 1e-2;
	diff r = {0};
	r.at = -1;
	kiln_tensor g = {.type = ref->type, .data = (void *)got};
	double worst = -1;
	for (int64_t i = 0; i < kiln_tensor_numel(ref); i++) {
		double a = kiln_tensor_get_f64(ref, i), b = kiln_tensor_get_f64(&g, i);
		double e = fabs(a - b), tol = atol + rtol * fabs(a);
		bool same_nan = isnan(a) && isnan(b), same_inf = isinf(a) && a == b;
		if (same_nan || same_inf)
			continue;
		bool bad = isnan(e) || e > tol;
		if (!kiln_dtype_is_float(ref->type.dtype))
			bad = a != b;
		r.bad += bad;
		double score = isnan(e) ? INFINITY : e - tol;
		if (score > worst) {
			worst = score;
			r.at = i;
			r.ref = a;
			r.got = b;
		}
		if (!isnan(e) && e > r.max_abs)
			r.max_abs = e;
		if (!isnan(e) && a != 0 && e / fabs(a) > r.max_rel)
			r.max_rel = e / fabs(a);
		if (isnan(e))
			r.max_abs = NAN;
	}
	return r;
}

/* Writes DIR/<node>.kir and DIR/<input>.npy (the reference values), and
 * prints the command that reruns it. */
static int dump(const char *dir, const kiln_node *n, int opset, const kiln_interp *it)
{
	if (mkdir(dir, 0777) != 0 && access(dir, W_OK) != 0) {
		fprintf(stderr, "%s: cannot create the dump folder\n", dir);
		return KILN_EXIT_ERROR;
	}
	kiln_graph *g = kiln_graph_of_node(n, opset);
	if (!g) {
		fprintf(stderr, "%s: cannot build a reproducer for node '%s'\n", dir, n->name);
		return KILN_EXIT_ERROR;
	}
	kiln_print_opts po = {.full_constants = true};
	char *text = kiln_graph_print(g, &po);
	size_t plen = strlen(dir) + strlen(n->name) + 300;
	char *path = malloc(plen), *cmd = malloc(plen * 4 + 4096);
	int rc = text && path && cmd ? KILN_EXIT_OK : KILN_EXIT_ERROR;
	if (rc == KILN_EXIT_OK) {
		snprintf(path, plen, "%s/repro.kir", dir);
		FILE *f = fopen(path, "w");
		if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
			fprintf(stderr, "%s: cannot write\n", path);
			rc = KILN_EXIT_ERROR;
		}
		size_t len = (size_t)snprintf(cmd, plen * 4 + 4096, "kiln run %s --check", path);
		for (int i = 0; rc == KILN_EXIT_OK && i < g->n_inputs; i++) {
			const kiln_value *v = g->inputs[i];
			const kiln_value *outer = NULL;
			for (int j = 0; j < n->n_inputs && !outer; j++)
				if (n->inputs[j] && !strcmp(n->inputs[j]->name, v->name))
					outer = n->inputs[j];
			snprintf(path, plen, "%s/input%d.npy", dir, i);
			kiln_diag d;
			kiln_diag_init(&d, path);
			const kiln_tensor *t = outer ? kiln_interp_value(it, outer->id) : NULL;
			if (!t || kiln_npy_write(path, t, &d) != KILN_OK)
				rc = KILN_EXIT_ERROR;
			len += (size_t)snprintf(cmd + len, plen * 4 + 4096 - len, " --input '%s'=%s", v->name,
			                        path);
		}
	}
	if (rc == KILN_EXIT_OK)
		printf("reproducer: %s/repro.kir and its %d input%s; rerun with\n  %s\n", dir,
		       g->n_inputs, g->n_inputs == 1 ? "" : "s", cmd);
	free(text);
	free(path);
	free(cmd);
	kiln_graph_destroy(g);
	return rc;
}

/* Compiles dbg (already optimised: no pass runs again) to a temporary .so,
 * runs it on the inputs and returns its outputs in outs[] (malloc'd). */
static int run_compiled(const kiln_cli_check_opts *o, const kiln_graph *dbg,
                        const kiln_tensor *inputs, void **outs)
{
	char dir[512];
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/kiln-check-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("kiln run --check: temporary folder");
		return KILN_EXIT_ERROR;
	}
	char so[600];
	snprintf(so, sizeof so, "%s/check.so", dir);
	kiln_compile_opts co = {.opt_level = o->opt_level, .passes = ""};
	kiln_diag d;
	kiln_diag_init(&d, o->model);
	kiln_compiled *c = NULL;
	int rc = KILN_EXIT_OK;
	if (kiln_compile(dbg, &co, &c, &d) != KILN_OK ||
	    kiln_compiled_emit(c, KILN_EMIT_SO, so, &d) != KILN_OK)
		rc = KILN_EXIT_ERROR;
	kiln_compiled_destroy(c);
	char err[512];
	kiln_rt_model_t *m = NULL;
	kiln_rt_session_t *s = NULL;
	kiln_rt_session_opts so_opts = {.n_threads = o->threads};
	if (rc == KILN_EXIT_OK && (kiln_rt_model_load(so, &m, err, sizeof err) != KILN_RT_OK ||
	                           kiln_rt_session_create(m, &so_opts, &s) != KILN_RT_OK)) {
		fprintf(stderr, "%s: %s\n", o->model, m ? "cannot create a session" : err);
		rc = KILN_EXIT_ERROR;
	}
	unlink(so);
	rmdir(dir);
	const void **ins = calloc((size_t)dbg->n_inputs + 1, sizeof *ins);
	if (rc == KILN_EXIT_OK && !ins)
		rc = KILN_EXIT_ERROR;
	for (int i = 0; rc == KILN_EXIT_OK && i < dbg->n_inputs; i++)
		ins[i] = inputs[i].data;
	for (int i = 0; rc == KILN_EXIT_OK && i < dbg->n_outputs; i++) {
		size_t bytes = kiln_type_bytes(&dbg->outputs[i]->type);
		if (!(outs[i] = malloc(bytes ? bytes : 1)))
			rc = KILN_EXIT_ERROR;
	}
	if (rc == KILN_EXIT_OK && kiln_rt_session_run_raw(s, ins, outs) != KILN_RT_OK) {
		fprintf(stderr, "%s: %s\n", o->model, kiln_rt_session_error(s));
		rc = KILN_EXIT_ERROR;
	}
	free(ins);
	kiln_rt_session_free(s);
	kiln_rt_model_free(m);
	return rc;
}

int kiln_cli_check(const kiln_cli_check_opts *o, const kiln_graph *g, const kiln_tensor *inputs)
{
	kiln_diag d;
	kiln_diag_init(&d, o->model);
	kiln_graph *opt = kiln_graph_clone(g, NULL), *dbg = NULL;
	kiln_opt_opts oo = {.opt_level = o->opt_level};
	int rc = opt && kiln_optimize(opt, &oo, &d) == KILN_OK ? KILN_EXIT_OK : KILN_EXIT_ERROR;
	/* the debug graph: every node output also a graph output (value ids
	 * are kept by the clone, so they index the interpreter's values) */
	int first_extra = 0;
	if (rc == KILN_EXIT_OK && (dbg = kiln_graph_clone(opt, NULL))) {
		first_extra = dbg->n_outputs;
		for (int i = 0; i < dbg->n_nodes && rc == KILN_EXIT_OK; i++)
			for (int j = 0; j < dbg->nodes[i]->n_outputs; j++)
				if (kiln_graph_add_output(dbg, dbg->nodes[i]->outputs[j]) != KILN_OK)
					rc = KILN_EXIT_ERROR;
	} else {
		rc = KILN_EXIT_ERROR;
	}
	void **outs = dbg ? calloc((size_t)dbg->n_outputs + 1, sizeof *outs) : NULL;
	if (rc == KILN_EXIT_OK && !outs)
		rc = KILN_EXIT_ERROR;
	if (rc == KILN_EXIT_OK)
		rc = run_compiled(o, dbg, inputs, outs);
	kiln_interp *ref = NULL, *orig = NULL;
	if (rc == KILN_EXIT_OK && (kiln_interp_create(opt, &ref, &d) != KILN_OK ||
	                           kiln_interp_run(ref, inputs, opt->n_inputs, &d) != KILN_OK ||
	                           kiln_interp_create(g, &orig, &d) != KILN_OK ||
	                           kiln_interp_run(orig, inputs, g->n_inputs, &d) != KILN_OK))
		rc = KILN_EXIT_ERROR;
	int bad_kernel = -1;
	double worst_abs = 0;
	const char *worst_node = NULL;
	if (rc == KILN_EXIT_OK) {
		printf("checking %d kernels of %s at -O%d against the interpreter (rtol %g, atol %g)\n",
		       opt->n_nodes, o->model, o->opt_level, o->rtol, o->atol);
		int k = first_extra;
		for (int i = 0; i < opt->n_nodes && bad_kernel < 0; i++) {
			const kiln_node *n = opt->nodes[i];
			for (int j = 0; j < n->n_outputs; j++, k++) {
				const kiln_tensor *t = kiln_interp_value(ref, n->outputs[j]->id);
				diff df = compare(t, outs[k], o->rtol, o->atol);
				if (!(df.max_abs <= worst_abs)) {
					worst_abs = df.max_abs;
					worst_node = n->name;
				}
				if (!df.bad || bad_kernel >= 0)
					continue;
				bad_kernel = i;
				char op[256], ty[160];
				kiln_node_op_text(n, op, sizeof op);
				printf("FIRST MISMATCH: kernel %d of %d, node '%s' (%s), from ONNX node%s %s\n", i,
				       opt->n_nodes, n->name, op, n->origin && strchr(n->origin, ',') ? "s" : "",
				       n->origin ? n->origin : n->name);
				printf("  output %d '%s' %s: %lld of %lld elements out of tolerance\n", j,
				       n->outputs[j]->name, kiln_type_str(&t->type, ty, sizeof ty),
				       (long long)df.bad, (long long)kiln_tensor_numel(t));
				printf("  max abs error %.6g, max rel error %.6g; worst at element %lld: compiled "
				       "%.9g, interpreter %.9g\n",
				       df.max_abs, df.max_rel, (long long)df.at, df.got, df.ref);
				if (n->body)
					for (int b = 0; b < n->body->n_nodes; b++)
						printf("  member: %s %s\n", kiln_op_name(n->body->nodes[b]->op),
						       n->body->nodes[b]->name);
			}
		}
		if (bad_kernel >= 0 && o->dump_dir)
			rc = dump(o->dump_dir, opt->nodes[bad_kernel], opt->opset, ref);
		else if (bad_kernel >= 0)
			printf("(--dump DIR writes its inputs as .npy and the node as a .kir reproducer)\n");
		else
			printf("all %d kernels within tolerance; largest abs error %.3g (node '%s')\n",
			       opt->n_nodes, worst_abs, worst_node ? worst_node : "-");
		/* the passes themselves: compiled outputs against the original graph */
		for (int i = 0; i < g->n_outputs; i++) {
			const kiln_tensor *t = kiln_interp_output(orig, i);
			diff df = compare(t, outs[i], o->rtol, o->atol);
			printf("output '%s': max abs error %.3g against the unoptimised graph%s\n",
			       g->outputs[i]->name, df.max_abs, df.bad ? " — OUT OF TOLERANCE" : "");
			if (df.bad && bad_kernel < 0)
				bad_kernel = INT32_MAX; /* a pass changed the result */
		}
		if (bad_kernel >= 0 && rc == KILN_EXIT_OK)
			rc = KILN_EXIT_ERROR;
	}
	for (int i = 0; outs && dbg && i < dbg->n_outputs; i++)
		free(outs[i]);
	free(outs);
	if (ref)
		kiln_interp_destroy(ref);
	if (orig)
		kiln_interp_destroy(orig);
	kiln_graph_destroy(dbg);
	kiln_graph_destroy(opt);
	return rc;
}
