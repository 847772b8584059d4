/* cmd_run_check.c — `kiln run MODEL --check`: the numerics bisector.
 *
 * The model's optimised graph (the -O pipeline, as kiln compile makes it) is
 * compiled once more with every kernel's output exposed as a graph output,
 * run through libkiln_rt, and compared kernel by kernel, in execution order,
 * with the reference interpreter running that kernel's node alone on the
 * same inputs the kernel read (the compiled values; a fusion node's
 * reference is its body, interpreted), so each kernel is judged on its own
 * work and an error is blamed once, where it is made. The first kernel whose
 * output leaves tolerance is reported with its members and ONNX source
 * nodes; with --dump DIR its inputs are written as .npy and the node as a
 * one-node .kir, a minimal reproducer that reproduces the same comparison. The compiled graph outputs are also compared with
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

/* One compared tensor: the worst element against atol + rtol * |ref| +
 * extra (the rounding allowance of sum_allowance). */
typedef struct diff {
	double max_abs, max_rel, ref, got;
	int64_t at, bad; /* worst index; elements out of tolerance */
} diff;

static diff compare(const kiln_tensor *ref, const void *got, double rtol, double atol,
                    double extra)
{
	atol += extra;
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

static double rms(const kiln_tensor *t)
{
	int64_t numel = t && t->data ? kiln_tensor_numel(t) : 0;
	double sq = 0;
	for (int64_t i = 0; i < numel; i++) {
		double a = kiln_tensor_get_f64(t, i);
		if (isfinite(a))
			sq += a * a;
	}
	return numel ? sqrt(sq / (double)numel) : 0;
}

/* The reference value of the product's operand j: the node's own input, or
 * for a fusion node the fusion operand feeding its first member (NULL when
 * that member reads another member). */
static const kiln_tensor *operand(const kiln_node *n, int j, const kiln_interp *ref)
{
	const kiln_node *p = n->body && n->body->n_nodes ? n->body->nodes[0] : n;
	const kiln_value *v = kiln_node_in(p, j);
	if (v && n->body) {
		int slot = -1;
		for (int i = 0; i < n->body->n_inputs; i++)
			if (n->body->inputs[i] == v)
				slot = i;
		v = slot >= 0 ? n->inputs[slot] : NULL;
	}
	return v ? kiln_interp_value(ref, v->id) : NULL;
}

/* A float sum of depth products, rounded at every step, is off by up to
 * about depth unit roundoffs of the products' size, however small the sum:
 * where the products cancel (BatchNorm-folded weights, long dot products) an
 * exact kernel leaves rtol * |ref|. The allowance added to the tolerance is
 * sum_tol * depth * u * RMS(operand 0) * RMS(operand 1), depth = the
 * multiply-adds per output element (the node's FLOPs over twice its
 * outputs); 0 for elementwise nodes. */
static double sum_allowance(const kiln_node *n, const kiln_tensor *out, const kiln_interp *ref,
                            double sum_tol)
{
	double u = 0;
	switch (out->type.dtype) {
	case KILN_DT_F32: u = 0x1p-24; break;
	case KILN_DT_F64: u = 0x1p-53; break;
	case KILN_DT_F16: u = 0x1p-11; break;
	case KILN_DT_BF16: u = 0x1p-8; break;
	default: return 0;
	}
	int64_t numel = kiln_tensor_numel(out);
	double depth = numel ? (double)kiln_node_flops(n) / (2.0 * (double)numel) : 0;
	if (sum_tol == 0 || !(depth > 1))
		return 0;
	return sum_tol * depth * u * rms(operand(n, 0, ref)) * rms(operand(n, 1, ref));
}

/* Writes DIR/repro.kir (one, the kernel's node alone) and DIR/input<i>.npy
 * (the inputs it was checked on, held by it), and prints the command that
 * reruns it. */
static int dump(const char *dir, const kiln_graph *g, const kiln_interp *it)
{
	if (mkdir(dir, 0777) != 0 && access(dir, W_OK) != 0) {
		fprintf(stderr, "%s: cannot create the dump folder\n", dir);
		return KILN_EXIT_ERROR;
	}
	kiln_print_opts po = {.full_constants = true};
	char *text = kiln_graph_print(g, &po);
	size_t plen = strlen(dir) + 300;
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
			snprintf(path, plen, "%s/input%d.npy", dir, i);
			kiln_diag d;
			kiln_diag_init(&d, path);
			if (kiln_npy_write(path, kiln_interp_value(it, v->id), &d) != KILN_OK)
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
	return rc;
}

/* Node n alone (*one), interpreted on the compiled values of its inputs
 * (cval, by value id): the kernel's reference given exactly the kernel's
 * inputs, so an error made upstream is not blamed again downstream. NULL on
 * failure (reported through d). */
static kiln_interp *reference(const kiln_node *n, int opset, void *const *cval, kiln_graph **one,
                              kiln_diag *d)
{
	kiln_graph *g = *one = kiln_graph_of_node(n, opset);
	kiln_tensor *ins = g ? calloc((size_t)g->n_inputs + 1, sizeof *ins) : NULL;
	kiln_interp *it = NULL;
	bool ok = ins != NULL;
	for (int i = 0; ok && i < g->n_inputs; i++) {
		const kiln_value *v = g->inputs[i], *outer = NULL;
		for (int j = 0; j < n->n_inputs && !outer; j++)
			if (n->inputs[j] && !strcmp(n->inputs[j]->name, v->name))
				outer = n->inputs[j];
		ins[i] = (kiln_tensor){.type = v->type, .data = outer ? cval[outer->id] : NULL};
		ok = ins[i].data != NULL;
	}
	if (!ok)
		kiln_diag_error(d, KILN_ERR_OOM, n, "cannot build the kernel's reference");
	else if (kiln_interp_create(g, &it, d) == KILN_OK &&
	         kiln_interp_run(it, ins, g->n_inputs, d) != KILN_OK) {
		kiln_interp_destroy(it);
		it = NULL;
	}
	free(ins);
	return it;
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
	kiln_interp *orig = NULL;
	if (rc == KILN_EXIT_OK && (kiln_interp_create(g, &orig, &d) != KILN_OK ||
	                           kiln_interp_run(orig, inputs, g->n_inputs, &d) != KILN_OK))
		rc = KILN_EXIT_ERROR;
	/* compiled values by id: graph inputs, constants, kernel outputs so far */
	void **cval = opt ? calloc((size_t)opt->n_values + 1, sizeof *cval) : NULL;
	if (rc == KILN_EXIT_OK && !cval)
		rc = KILN_EXIT_ERROR;
	for (int i = 0; rc == KILN_EXIT_OK && i < opt->n_inputs; i++)
		cval[opt->inputs[i]->id] = inputs[i].data;
	for (int i = 0; rc == KILN_EXIT_OK && i < opt->n_values; i++)
		if (opt->values[i] && opt->values[i]->kind == KILN_VALUE_CONST)
			cval[opt->values[i]->id] = opt->values[i]->data;
	int bad_kernel = -1;
	double worst_abs = 0;
	const char *worst_node = NULL;
	if (rc == KILN_EXIT_OK) {
		printf("checking %d kernels of %s at -O%d against the interpreter (rtol %g, atol %g, "
		       "sum-tol %g)\n",
		       opt->n_nodes, o->model, o->opt_level, o->rtol, o->atol, o->sum_tol);
		int k = first_extra;
		for (int i = 0; i < opt->n_nodes && bad_kernel < 0 && rc == KILN_EXIT_OK; i++) {
			const kiln_node *n = opt->nodes[i];
			kiln_graph *one = NULL;
			kiln_interp *ref = reference(n, opt->opset, cval, &one, &d);
			if (!ref) {
				rc = KILN_EXIT_ERROR;
				kiln_graph_destroy(one);
				break;
			}
			for (int j = 0; j < n->n_outputs; j++, k++) {
				cval[n->outputs[j]->id] = outs[k];
				const kiln_tensor *t = kiln_interp_output(ref, j);
				double extra = sum_allowance(one->nodes[0], t, ref, o->sum_tol);
				diff df = compare(t, outs[k], o->rtol, o->atol, extra);
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
				if (extra > 0)
					printf("  (tolerance includes a rounding allowance of %.3g for its sums)\n",
					       extra);
				if (n->body)
					for (int b = 0; b < n->body->n_nodes; b++)
						printf("  member: %s %s\n", kiln_op_name(n->body->nodes[b]->op),
						       n->body->nodes[b]->name);
			}
			if (bad_kernel >= 0 && o->dump_dir)
				rc = dump(o->dump_dir, one, ref);
			else if (bad_kernel >= 0)
				printf("(--dump DIR writes its inputs as .npy and the node as a .kir "
				       "reproducer)\n");
			kiln_interp_destroy(ref);
			kiln_graph_destroy(one);
		}
		if (bad_kernel < 0 && rc == KILN_EXIT_OK)
			printf("all %d kernels within tolerance; largest abs error %.3g (node '%s')\n",
			       opt->n_nodes, worst_abs, worst_node ? worst_node : "-");
		/* the passes themselves: compiled outputs against the original graph */
		for (int i = 0; rc == KILN_EXIT_OK && i < g->n_outputs; i++) {
			const kiln_tensor *t = kiln_interp_output(orig, i);
			diff df = compare(t, outs[i], o->rtol, o->atol, 0);
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
	free(cval);
	if (orig)
		kiln_interp_destroy(orig);
	kiln_graph_destroy(dbg);
	kiln_graph_destroy(opt);
	return rc;
}
