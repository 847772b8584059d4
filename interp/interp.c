/* interp.c — interpreter sessions and dispatch.
 *
 * A session holds one kiln_tensor per graph value, indexed by value id.
 * Node outputs own buffers malloc'd once at create; graph inputs point at the
 * caller's data during a run; constants point at the graph's own data.
 * kiln_interp_eval_node runs one all-constant node for the importer's folding. */
#include "interp_session.h"

#include <stdlib.h>
#include <string.h>

static const kiln_kernel_fn kernels[KILN_OP_COUNT] = {
#define KILN_OP(E, ...) [KILN_OP_##E] = kiln_interp_##E,
#include "ops.def"
#undef KILN_OP
};

struct kiln_interp {
	const kiln_graph *g;
	kiln_tensor *vals;   /* by value id */
	bool *owned;         /* vals[i].data was malloc'd here */
	kiln_tensor *in_buf; /* scratch: one node's inputs */
	kiln_tensor *out_buf;
};

/* Kernels may dereference a zero-element buffer's pointer; never hand out NULL. */
static void *alloc_data(const kiln_type *t)
{
	size_t bytes = kiln_type_bytes(t);
	return malloc(bytes ? bytes : 1);
}

void kiln_interp_destroy(kiln_interp *it)
{
	if (!it)
		return;
	if (it->vals) {
		for (int i = 0; i < it->g->n_values; i++)
			if (it->owned[i])
				free(it->vals[i].data);
	}
	free(it->vals);
	free(it->owned);
	free(it->in_buf);
	free(it->out_buf);
	free(it);
}

kiln_status kiln_interp_create(const kiln_graph *g, kiln_interp **out, kiln_diag *d)
{
	*out = NULL;
	for (int i = 0; i < g->n_values; i++) {
		const kiln_value *v = g->values[i];
		if (v->kind == KILN_VALUE_CONST && (v->elided || !v->data))
			return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL,
			                       "constant '%s' has elided data (print the IR with full constants)",
			                       v->name);
	}
	kiln_interp *it = calloc(1, sizeof *it);
	if (!it)
		return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory creating interpreter");
	it->g = g;
	int max_in = 1, max_out = 1;
	for (int i = 0; i < g->n_nodes; i++) {
		if (g->nodes[i]->n_inputs > max_in)
			max_in = g->nodes[i]->n_inputs;
		if (g->nodes[i]->n_outputs > max_out)
			max_out = g->nodes[i]->n_outputs;
	}
	size_t nv = (size_t)(g->n_values ? g->n_values : 1);
	it->vals = calloc(nv, sizeof *it->vals);
	it->owned = calloc(nv, sizeof *it->owned);
	it->in_buf = calloc((size_t)max_in, sizeof *it->in_buf);
	it->out_buf = calloc((size_t)max_out, sizeof *it->out_buf);
	if (!it->vals || !it->owned || !it->in_buf || !it->out_buf)
		goto oom;
	for (int i = 0; i < g->n_values; i++) {
		const kiln_value *v = g->values[i];
		it->vals[i].type = v->type;
		if (v->kind == KILN_VALUE_CONST)
			it->vals[i].data = v->data;
	}
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		for (int j = 0; j < n->n_outputs; j++) {
			int id = n->outputs[j]->id;
			if (!(it->vals[id].data = alloc_data(&n->outputs[j]->type)))
				goto oom;
			it->owned[id] = true;
		}
	}
	*out = it;
	return KILN_OK;
oom:
	kiln_interp_destroy(it);
	return kiln_diag_error(d, KILN_ERR_OOM, NULL, "out of memory creating interpreter");
}

static kiln_status call_kernel(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               kiln_diag *d)
{
	if ((unsigned)n->op >= KILN_OP_COUNT || !kernels[n->op])
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, n, "the interpreter has no kernel for this op");
	return kernels[n->op](n, in, out, d);
}

kiln_status kiln_interp_run(kiln_interp *it, const kiln_tensor *inputs, int n_inputs,
                            kiln_diag *d)
{
	const kiln_graph *g = it->g;
	if (n_inputs != g->n_inputs)
		return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL, "expected %d inputs, got %d",
		                       g->n_inputs, n_inputs);
	for (int i = 0; i < n_inputs; i++) {
		const kiln_value *v = g->inputs[i];
		const kiln_tensor *t = &inputs[i];
		if (!kiln_type_equal(&v->type, &t->type)) {
			char want[128], got[128];
			return kiln_diag_error(d, KILN_ERR_SHAPE, NULL, "input '%s': expected %s, got %s",
			                       v->name, kiln_type_str(&v->type, want, sizeof want),
			                       kiln_type_str(&t->type, got, sizeof got));
		}
		if (!t->data && kiln_type_numel(&t->type) > 0)
			return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL, "input '%s': no data", v->name);
	}
	for (int i = 0; i < n_inputs; i++)
		it->vals[g->inputs[i]->id].data = inputs[i].data;
	for (int i = 0; i < g->n_nodes; i++) {
		const kiln_node *n = g->nodes[i];
		for (int j = 0; j < n->n_inputs; j++) {
			const kiln_value *v = n->inputs[j];
			it->in_buf[j] = v ? it->vals[v->id] : (kiln_tensor){0};
		}
		for (int j = 0; j < n->n_outputs; j++)
			it->out_buf[j] = it->vals[n->outputs[j]->id];
		KILN_TRY(call_kernel(n, it->in_buf, it->out_buf, d));
	}
	return KILN_OK;
}

int kiln_interp_n_outputs(const kiln_interp *it) { return it->g->n_outputs; }

const kiln_tensor *kiln_interp_output(const kiln_interp *it, int i)
{
	if (i < 0 || i >= it->g->n_outputs)
		return NULL;
	return &it->vals[it->g->outputs[i]->id];
}

const kiln_tensor *kiln_interp_value(const kiln_interp *it, int value_id)
{
	if (value_id < 0 || value_id >= it->g->n_values)
		return NULL;
	return &it->vals[value_id];
}

kiln_status kiln_interp_eval_node(const kiln_node *n, void **out_data, kiln_diag *d)
{
	kiln_tensor in_small[8], out_small[8];
	kiln_tensor *in = in_small, *out = out_small;
	if (n->n_inputs > 8)
		in = malloc((size_t)n->n_inputs * sizeof *in);
	if (n->n_outputs > 8)
		out = malloc((size_t)n->n_outputs * sizeof *out);
	kiln_status s = KILN_OK;
	if (!in || !out) {
		s = kiln_diag_error(d, KILN_ERR_OOM, n, "out of memory");
		goto done;
	}
	for (int i = 0; i < n->n_inputs; i++) {
		const kiln_value *v = n->inputs[i];
		if (v && (v->kind != KILN_VALUE_CONST || !v->data)) {
			s = kiln_diag_error(d, KILN_ERR_INTERNAL, n,
			                    "cannot evaluate: input '%s' is not a constant with data", v->name);
			goto done;
		}
		in[i] = v ? (kiln_tensor){.type = v->type, .data = v->data} : (kiln_tensor){0};
	}
	for (int i = 0; i < n->n_outputs; i++)
		out[i] = (kiln_tensor){.type = n->outputs[i]->type, .data = out_data[i]};
	s = call_kernel(n, in, out, d);
done:
	if (in != in_small)
		free(in);
	if (out != out_small)
		free(out);
	return s;
}

/* A fusion node runs its body as a graph of its own: the reference
 * semantics of every fused kernel. */
kiln_status kiln_interp_FUSION(const kiln_node *n, const kiln_tensor *in, kiln_tensor *out,
                               kiln_diag *d)
{
	if (!n->body)
		return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "fusion node has no body");
	kiln_interp *it;
	KILN_TRY(kiln_interp_create(n->body, &it, d));
	kiln_status s = kiln_interp_run(it, in, n->n_inputs, d);
	for (int i = 0; s == KILN_OK && i < n->n_outputs; i++) {
		const kiln_tensor *t = kiln_interp_output(it, i);
		size_t bytes = kiln_type_bytes(&out[i].type);
		if (!kiln_type_equal(&t->type, &out[i].type))
			s = kiln_diag_error(d, KILN_ERR_INTERNAL, n, "body output %d has another type", i);
		else if (bytes)
			memcpy(out[i].data, t->data, bytes);
	}
	kiln_interp_destroy(it);
	return s;
}
