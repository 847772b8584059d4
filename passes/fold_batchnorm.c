/* fold_batchnorm.c — BatchNormalization (inference) folded into the Conv or
 * Gemm that feeds it:
 *
 *   a[c] = scale[c] / sqrt(var[c] + epsilon)
 *   Conv:  W'[c, ...] = W[c, ...] * a[c]          b'[c] = (b[c] - mean[c]) * a[c] + bias[c]
 *   Gemm:  B'[:, c]   = B[:, c] * a[c]             C'[c] = (beta*C[c] - mean[c]) * a[c] + bias[c]
 *
 * (Gemm's output channel is its column: BatchNormalization normalises dim 1.)
 * Done in double, rounded once to f32. Applies only when the producer's
 * output has no other use, every parameter is an f32 constant with data, and
 * the BatchNormalization is not in training mode. New weights are new
 * constants; the old ones go when unused (dce). */
#include "passes.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The BN's per-channel a[c] and shift[c] = bias[c] - mean[c]*a[c], or false. */
static bool bn_params(const kiln_node *bn, int64_t channels, double *a, double *shift)
{
	const float *s = kiln_pass_const_f32(bn->inputs[1]), *b = kiln_pass_const_f32(bn->inputs[2]);
	const float *m = kiln_pass_const_f32(bn->inputs[3]), *v = kiln_pass_const_f32(bn->inputs[4]);
	if (!s || !b || !m || !v || kiln_node_int(bn, "training_mode", 0))
		return false;
	for (int i = 1; i < 5; i++)
		if (kiln_type_numel(&bn->inputs[i]->type) != channels)
			return false;
	double eps = kiln_node_float(bn, "epsilon", 1e-5f);
	for (int64_t c = 0; c < channels; c++) {
		a[c] = s[c] / sqrt((double)v[c] + eps);
		shift[c] = b[c] - m[c] * a[c];
	}
	return true;
}

static kiln_value *new_const(kiln_graph *g, const kiln_value *like, const char *suffix,
                             const kiln_type *t, const float *data)
{
	char base[200];
	snprintf(base, sizeof base, "%s.%s", like->name, suffix);
	const char *name = kiln_graph_unique_value_name(g, base);
	return name ? kiln_graph_add_const(g, name, t, data) : NULL;
}

/* Gives n a third input slot when it has two. */
static bool ensure_three_inputs(kiln_graph *g, kiln_node *n)
{
	if (n->n_inputs >= 3)
		return true;
	kiln_value **in = kiln_arena_alloc(g->arena, 3 * sizeof *in);
	if (!in)
		return false;
	for (int i = 0; i < n->n_inputs; i++)
		in[i] = n->inputs[i];
	n->inputs = in;
	n->n_inputs = 3;
	return true;
}

static kiln_status fold_conv(kiln_graph *g, kiln_node *conv, const double *a, const double *shift,
                             int64_t m, kiln_diag *d)
{
	const kiln_value *wv = conv->inputs[1], *bv = kiln_node_in(conv, 2);
	const float *w = kiln_pass_const_f32(wv), *b = bv ? kiln_pass_const_f32(bv) : NULL;
	int64_t per = kiln_type_numel(&wv->type) / m;
	float *nw = malloc((size_t)(m * per) * sizeof *nw);
	float *nb = malloc((size_t)m * sizeof *nb);
	kiln_status st = KILN_OK;
	if (!nw || !nb) {
		st = kiln_diag_error(d, KILN_ERR_OOM, conv, "out of memory folding BatchNormalization");
		goto done;
	}
	for (int64_t c = 0; c < m; c++) {
		for (int64_t i = 0; i < per; i++)
			nw[c * per + i] = (float)(w[c * per + i] * a[c]);
		nb[c] = (float)((b ? b[c] : 0.0) * a[c] + shift[c]);
	}
	kiln_type bt = {.dtype = KILN_DT_F32, .rank = 1, .dims = {m}};
	kiln_value *w2 = new_const(g, wv, "bn", &wv->type, nw);
	kiln_value *b2 = new_const(g, bv ? bv : wv, bv ? "bn" : "bn_bias", &bt, nb);
	if (!w2 || !b2 || !ensure_three_inputs(g, conv)) {
		st = kiln_diag_error(d, KILN_ERR_OOM, conv, "out of memory folding BatchNormalization");
		goto done;
	}
	conv->inputs[1] = w2;
	conv->inputs[2] = b2;
done:
	free(nw);
	free(nb);
	return st;
}

/* Gemm: columns of B scaled; C becomes the [N] shift (with beta folded in). */
static kiln_status fold_gemm(kiln_graph *g, kiln_node *gemm, const double *a, const double *shift,
                             int64_t nn, kiln_diag *d)
{
	const kiln_value *bv = gemm->inputs[1], *cv = kiln_node_in(gemm, 2);
	const float *b = kiln_pass_const_f32(bv), *c = cv ? kiln_pass_const_f32(cv) : NULL;
	bool tb = kiln_node_int(gemm, "transB", 0) != 0;
	int64_t k = kiln_type_numel(&bv->type) / nn;
	double beta = kiln_node_float(gemm, "beta", 1.0f);
	float *nbm = malloc((size_t)(k * nn) * sizeof *nbm);
	float *nc = malloc((size_t)nn * sizeof *nc);
	kiln_status st = KILN_OK;
	if (!nbm || !nc) {
		st = kiln_diag_error(d, KILN_ERR_OOM, gemm, "out of memory folding BatchNormalization");
		goto done;
	}
	for (int64_t p = 0; p < k; p++)
		for (int64_t j = 0; j < nn; j++) {
			int64_t i = tb ? j * k + p : p * nn + j;
			nbm[i] = (float)(b[i] * a[j]);
		}
	int64_t cn = cv ? kiln_type_numel(&cv->type) : 0;
	for (int64_t j = 0; j < nn; j++)
		nc[j] = (float)((c ? beta * c[cn == 1 ? 0 : j] : 0.0) * a[j] + shift[j]);
	kiln_type ct = {.dtype = KILN_DT_F32, .rank = 1, .dims = {nn}};
	kiln_value *b2 = new_const(g, bv, "bn", &bv->type, nbm);
	kiln_value *c2 = new_const(g, cv ? cv : bv, cv ? "bn" : "bn_bias", &ct, nc);
	if (!b2 || !c2 || !ensure_three_inputs(g, gemm) ||
	    kiln_node_set_float(g, gemm, "beta", 1.0f) != KILN_OK) {
		st = kiln_diag_error(d, KILN_ERR_OOM, gemm, "out of memory folding BatchNormalization");
		goto done;
	}
	gemm->inputs[1] = b2;
	gemm->inputs[2] = c2;
done:
	free(nbm);
	free(nc);
	return st;
}

/* Whether Gemm's C can take the shift: absent, or one value per column. */
static bool gemm_c_ok(const kiln_node *gemm, int64_t nn)
{
	const kiln_value *cv = kiln_node_in(gemm, 2);
	if (!cv)
		return true;
	if (!kiln_pass_const_f32(cv))
		return false;
	int64_t cn = kiln_type_numel(&cv->type);
	const kiln_type *t = &cv->type;
	return cn == 1 || (cn == nn && t->dims[t->rank - 1] == nn);
}

kiln_status kiln_pass_fold_batchnorm(kiln_graph *g, bool *changed, kiln_diag *d)
{
	bool *keep = malloc((size_t)(g->n_nodes ? g->n_nodes : 1));
	if (!keep)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory folding BatchNormalization");
	memset(keep, 1, (size_t)g->n_nodes);
	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_nodes && st == KILN_OK; i++) {
		kiln_node *bn = g->nodes[i];
		if (bn->op != KILN_OP_BATCH_NORM || bn->n_outputs != 1)
			continue;
		kiln_value *x = bn->inputs[0];
		kiln_node *p = x->kind == KILN_VALUE_NODE ? x->producer : NULL;
		if (!p || x->type.dtype != KILN_DT_F32 || x->type.rank < 2 ||
		    kiln_pass_single_user(g, x) != bn)
			continue;
		int64_t ch = x->type.dims[1];
		bool conv = p->op == KILN_OP_CONV && kiln_pass_const_f32(p->inputs[1]) &&
		            (!kiln_node_in(p, 2) || kiln_pass_const_f32(p->inputs[2]));
		bool gemm = p->op == KILN_OP_GEMM && x->type.rank == 2 &&
		            kiln_pass_const_f32(p->inputs[1]) && gemm_c_ok(p, ch);
		if (!conv && !gemm)
			continue;
		double *a = malloc((size_t)ch * 2 * sizeof *a);
		if (!a) {
			st = kiln_diag_error(d, KILN_ERR_OOM, bn, "out of memory folding BatchNormalization");
			break;
		}
		if (bn_params(bn, ch, a, a + ch)) {
			st = conv ? fold_conv(g, p, a, a + ch, ch, d) : fold_gemm(g, p, a, a + ch, ch, d);
			if (st == KILN_OK) {
				p->origin = kiln_pass_join_origin(g, p, bn);
				/* the producer takes over the BN's output value, so its
				 * name (maybe a graph output's) and its uses stay */
				kiln_value *y = bn->outputs[0];
				p->outputs[0] = y;
				y->producer = p;
				y->index = 0;
				keep[i] = false;
				*changed = true;
			}
		}
		free(a);
	}
	if (*changed) {
		kiln_graph_compact(g, keep);
		kiln_graph_prune(g);
	}
	free(keep);
	return st;
}
