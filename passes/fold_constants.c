/* fold_constants.c — constant folding: a node whose inputs are all constants
 * with data is evaluated by the reference interpreter and its outputs become
 * constants (the same values, so names, uses and graph outputs stay). Shape
 * folds from its input's static type whatever the input is. One sweep in
 * topological order folds whole chains (Shape -> Gather -> Concat ->
 * Reshape's shape, a Transpose or Cast of a weight, ...).
 *
 * Left alone:
 *   - a node whose outputs would hold more than KILN_FOLD_MAX_GROWTH
 *     elements beyond its constant inputs (Expand, ConstantOfShape, Tile of
 *     a small constant into a huge one): computing it at run time is cheaper
 *     than storing it in the artefact;
 *   - QuantizeLinear / DequantizeLinear: a quantised weight stays int8 with
 *     its scale (folding would store it as f32, four times larger);
 *   - fusion nodes (made by later passes; nothing to gain).
 *
 * Needs: a verified graph. Leaves: the folded nodes removed, then dce (the
 * producers of values only Shape read, constants nothing reads). */
#include "interp.h"
#include "passes.h"

#include <stdlib.h>

/* Most elements a fold may add to the graph's constants per node. */
#define KILN_FOLD_MAX_GROWTH ((int64_t)1 << 20)

static bool const_data(const kiln_value *v)
{
	return v->kind == KILN_VALUE_CONST && v->data && !v->elided;
}

/* Shape of a statically shaped value: start/end clamped as ONNX does. */
static void shape_of(const kiln_node *n, int64_t *dst)
{
	const kiln_type *t = &n->inputs[0]->type;
	int64_t start = kiln_node_int(n, "start", 0), end = kiln_node_int(n, "end", t->rank);
	start += start < 0 ? t->rank : 0;
	end += end < 0 ? t->rank : 0;
	start = start < 0 ? 0 : start > t->rank ? t->rank : start;
	end = end < 0 ? 0 : end > t->rank ? t->rank : end;
	for (int64_t i = start; i < end; i++)
		dst[i - start] = t->dims[i];
}

static bool foldable(const kiln_node *n)
{
	if (n->op == KILN_OP_FUSION || n->op == KILN_OP_QUANTIZE_LINEAR ||
	    n->op == KILN_OP_DEQUANTIZE_LINEAR)
		return false;
	if (n->op == KILN_OP_SHAPE)
		return true;
	int64_t in = 0, out = 0;
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		if (v && !const_data(v))
			return false;
		if (v)
			in += kiln_type_numel(&v->type);
	}
	for (int i = 0; i < n->n_outputs; i++)
		out += kiln_type_numel(&n->outputs[i]->type);
	return out - in <= KILN_FOLD_MAX_GROWTH;
}

/* Evaluates n and turns its outputs into constants. */
static kiln_status fold(kiln_graph *g, kiln_node *n, kiln_diag *d)
{
	void *small[4] = {0};
	void **buf = n->n_outputs <= 4 ? small : calloc((size_t)n->n_outputs, sizeof *buf);
	kiln_status st = buf ? KILN_OK : KILN_ERR_OOM;
	for (int i = 0; i < n->n_outputs && st == KILN_OK; i++) {
		size_t bytes = kiln_type_bytes(&n->outputs[i]->type);
		if (!(buf[i] = calloc(1, bytes ? bytes : 1)))
			st = KILN_ERR_OOM;
	}
	if (st == KILN_ERR_OOM) {
		st = kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory folding constants");
	} else if (n->op == KILN_OP_SHAPE) {
		shape_of(n, buf[0]);
	} else {
		st = kiln_interp_eval_node(n, buf, d);
	}
	for (int i = 0; i < n->n_outputs && st == KILN_OK; i++)
		if (kiln_value_make_const(g, n->outputs[i], buf[i]) != KILN_OK)
			st = kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory folding constants");
	for (int i = 0; buf && i < n->n_outputs; i++)
		free(buf[i]);
	if (buf != small)
		free(buf);
	return st;
}

kiln_status kiln_pass_fold_constants(kiln_graph *g, bool *changed, kiln_diag *d)
{
	bool *keep = malloc((size_t)(g->n_nodes ? g->n_nodes : 1));
	if (!keep)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory folding constants");
	bool folded = false;
	kiln_status st = KILN_OK;
	for (int i = 0; i < g->n_nodes; i++) {
		kiln_node *n = g->nodes[i];
		keep[i] = true;
		if (st != KILN_OK || !foldable(n))
			continue;
		/* an evaluation error (an index out of range, ...) is the model's:
		 * the node stays, and the interpreter or backend reports it at run
		 * time as it would without the pass */
		kiln_diag quiet;
		kiln_diag_init(&quiet, NULL);
		quiet.fn = NULL; /* silent */
		kiln_status s = fold(g, n, n->op == KILN_OP_SHAPE ? d : &quiet);
		if (s == KILN_ERR_OOM) {
			st = kiln_diag_error(d, s, n, "out of memory folding constants");
		} else if (s == KILN_OK) {
			keep[i] = false;
			folded = true;
		}
	}
	if (folded) {
		kiln_graph_compact(g, keep);
		*changed = true;
	}
	free(keep);
	KILN_TRY(st);
	return folded ? kiln_pass_dce(g, changed, d) : KILN_OK;
}
