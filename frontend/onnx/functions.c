/* functions.c — ops defined by function bodies, expanded inline.
 *
 * Model-local FunctionProtos (ModelProto.functions) expand at each call:
 * inner values are renamed "<call>/<inner>", attribute references resolve
 * from the call's attributes or the function's defaults, nested calls expand
 * recursively. The standard function-bodied ops kiln's op table lacks
 * (Softplus, Elu, Sum, ...) are built here from ops.def ops, following the
 * ONNX definitions exactly. */
#include "onnx_internal.h"

#include <stdio.h>
#include <string.h>

#define KILN_ONNX_MAX_DEPTH 32

int64_t kiln_onnx_function_opset(const kiln_onnx_ctx *c, const Onnx__FunctionProto *f)
{
	for (size_t i = 0; i < f->n_opset_import; i++)
		if (kiln_onnx_is_default_domain(f->opset_import[i]->domain))
			return f->opset_import[i]->version;
	return c->opset;
}

/* ---- model-local functions ---------------------------------------------- */

typedef struct expansion {
	kiln_onnx_ctx *c;
	const kiln_onnx_node *call;
	const Onnx__FunctionProto *f;
	kiln_onnx_map names; /* inner name -> caller-side name */
} expansion;

static const char *rename_value(expansion *e, const char *inner)
{
	if (!*inner)
		return "";
	for (size_t i = 0; i < e->f->n_input; i++)
		if (strcmp(e->f->input[i], inner) == 0)
			return (int)i < e->call->n_in ? e->call->in[i] : "";
	const char *name = kiln_onnx_map_get(&e->names, inner);
	if (name)
		return name;
	for (size_t i = 0; i < e->f->n_output; i++)
		if (strcmp(e->f->output[i], inner) == 0 && (int)i < e->call->n_out &&
		    *e->call->out[i])
			name = e->call->out[i];
	if (!name)
		name = kiln_onnx_fresh_value_name(e->c, e->call->name, inner);
	if (!name || !kiln_onnx_map_put(&e->names, inner, (void *)name) ||
	    !kiln_onnx_map_put(&e->c->reserved, name, (void *)name))
		return NULL;
	return name;
}

/* The value bound to attribute reference `ref`: the call's, else the
 * function's default, else NULL (the attribute is left unset). */
static const Onnx__AttributeProto *resolve_ref(const expansion *e, const char *ref)
{
	for (int i = 0; i < e->call->n_attr; i++)
		if (strcmp(KILN_ONNX_STR(e->call->attr[i]->name), ref) == 0)
			return e->call->attr[i];
	for (size_t i = 0; i < e->f->n_attribute_proto; i++)
		if (strcmp(KILN_ONNX_STR(e->f->attribute_proto[i]->name), ref) == 0)
			return e->f->attribute_proto[i];
	return NULL;
}

static kiln_status expand_node(expansion *e, const Onnx__NodeProto *np, size_t index)
{
	kiln_onnx_ctx *c = e->c;
	kiln_arena *a = c->scratch;
	kiln_onnx_node on = {
		.op_type = KILN_ONNX_STR(np->op_type),
		.domain = KILN_ONNX_STR(np->domain),
		.n_in = (int)np->n_input,
		.n_out = (int)np->n_output,
		.opset = kiln_onnx_function_opset(c, e->f),
		.depth = e->call->depth + 1,
	};
	char idx[32];
	snprintf(idx, sizeof idx, "node_%zu", index);
	on.name = kiln_onnx_fresh_node_name(c, e->call->name, np->name && *np->name ? np->name : idx);
	on.in = kiln_arena_alloc(a, (np->n_input + 1) * sizeof *on.in);
	on.out = kiln_arena_alloc(a, (np->n_output + 1) * sizeof *on.out);
	on.attr = kiln_arena_alloc(a, (np->n_attribute + 1) * sizeof *on.attr);
	if (!on.name || !on.in || !on.out || !on.attr)
		return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
	for (size_t i = 0; i < np->n_input; i++)
		if (!(on.in[i] = rename_value(e, np->input[i])))
			return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
	for (size_t i = 0; i < np->n_output; i++)
		if (!(on.out[i] = rename_value(e, np->output[i])))
			return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
	for (size_t i = 0; i < np->n_attribute; i++) {
		Onnx__AttributeProto *attr = np->attribute[i];
		if (attr->ref_attr_name && *attr->ref_attr_name) {
			const Onnx__AttributeProto *val = resolve_ref(e, attr->ref_attr_name);
			if (!val)
				continue;
			Onnx__AttributeProto *copy = kiln_arena_memdup(a, val, sizeof *val);
			if (!copy)
				return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
			copy->name = attr->name;
			copy->ref_attr_name = NULL;
			attr = copy;
		}
		on.attr[on.n_attr++] = attr;
	}
	return kiln_onnx_emit(c, &on);
}

kiln_status kiln_onnx_expand_function(kiln_onnx_ctx *c, const kiln_onnx_node *on,
                                      const Onnx__FunctionProto *f)
{
	if (on->depth >= KILN_ONNX_MAX_DEPTH)
		return kiln_onnx_node_error(c, on, KILN_ERR_UNSUPPORTED,
		                            "function calls nest deeper than %d (is '%s' recursive?)",
		                            KILN_ONNX_MAX_DEPTH, on->op_type);
	if ((size_t)on->n_in > f->n_input || (size_t)on->n_out > f->n_output)
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
		                            "has %d inputs and %d outputs; function '%s' takes %zu "
		                            "and gives %zu", on->n_in, on->n_out, on->op_type,
		                            f->n_input, f->n_output);
	expansion e = {.c = c, .call = on, .f = f};
	kiln_status s = KILN_OK;
	for (size_t i = 0; i < f->n_node && s == KILN_OK; i++)
		s = expand_node(&e, f->node[i], i);
	kiln_onnx_map_free(&e.names);
	return s;
}

/* ---- standard function-bodied ops --------------------------------------- */

static const char *const std_functions[] = {
	"GreaterOrEqual", "LessOrEqual", "Softplus", "Softsign", "ThresholdedRelu",
	"Celu", "Mish", "Sum", "Mean", "Elu", "Selu", "CastLike", "Size",
};


bool kiln_onnx_is_std_function(const char *op_type)
{
	for (size_t i = 0; i < sizeof std_functions / sizeof *std_functions; i++)
		if (strcmp(std_functions[i], op_type) == 0)
			return true;
	return false;
}

/* Shorthands: every helper node is named NAME/<suffix>; `fin` marks the
 * last one, which carries the ONNX node's name and output. */
#define OP1(op, sfx, a, res) kiln_onnx_helper(c, on, op, sfx, (kiln_value *[]){a}, 1, NULL, res)
#define OP2(op, sfx, a, b, res) kiln_onnx_helper(c, on, op, sfx, (kiln_value *[]){a, b}, 2, NULL, res)
#define FIN1(op, a) kiln_onnx_helper(c, on, op, NULL, (kiln_value *[]){a}, 1, y, &out)
#define FIN2(op, a, b) kiln_onnx_helper(c, on, op, NULL, (kiln_value *[]){a, b}, 2, y, &out)
#define FIN3(op, a, b, cc) kiln_onnx_helper(c, on, op, NULL, (kiln_value *[]){a, b, cc}, 3, y, &out)

/* log(exp(x) + 1) */
static kiln_status softplus(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_value *x,
                            const char *y, kiln_value **res)
{
	kiln_value *e, *s, *one = kiln_onnx_scalar(c, on->name, "one", x->type.dtype, 1.0);
	if (!one)
		return KILN_ERR_OOM;
	KILN_TRY(OP1(KILN_OP_EXP, "exp", x, &e));
	KILN_TRY(OP2(KILN_OP_ADD, "add", e, one, &s));
	return kiln_onnx_helper(c, on, KILN_OP_LOG, y ? NULL : "log", &s, 1, y, res);
}

kiln_status kiln_onnx_expand_std(kiln_onnx_ctx *c, const kiln_onnx_node *on)
{
	const char *op = on->op_type;
	bool variadic = strcmp(op, "Sum") == 0 || strcmp(op, "Mean") == 0;
	int want_in = strcmp(op, "GreaterOrEqual") == 0 || strcmp(op, "LessOrEqual") == 0 ||
	                      strcmp(op, "CastLike") == 0
	                      ? 2
	                      : 1;
	if (variadic ? on->n_in < 1 : on->n_in != want_in)
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL, "has %d inputs, expected %s%d",
		                            on->n_in, variadic ? "at least " : "", want_in);
	if (on->n_out != 1 || !*on->out[0])
		return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL, "needs exactly one output");
	for (int i = 0; i < on->n_attr; i++) {
		const char *an = KILN_ONNX_STR(on->attr[i]->name);
		bool ok = (strcmp(an, "alpha") == 0 && (strcmp(op, "ThresholdedRelu") == 0 ||
		                                        strcmp(op, "Celu") == 0 ||
		                                        strcmp(op, "Elu") == 0 ||
		                                        strcmp(op, "Selu") == 0)) ||
		          (strcmp(an, "gamma") == 0 && strcmp(op, "Selu") == 0) ||
		          (strcmp(an, "saturate") == 0 && strcmp(op, "CastLike") == 0);
		if (!ok)
			return kiln_onnx_node_error(c, on, KILN_ERR_UNSUPPORTED,
			                            "attribute '%s' is not supported", an);
	}
	kiln_value **x = kiln_arena_alloc(c->scratch, (size_t)on->n_in * sizeof *x);
	if (!x)
		return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
	for (int i = 0; i < on->n_in; i++) {
		KILN_TRY(kiln_onnx_input(c, on, i, &x[i]));
		if (!x[i])
			return kiln_onnx_node_error(c, on, KILN_ERR_INVALID_MODEL,
			                            "required input %d is missing", i);
	}
	kiln_dtype dt = x[0]->type.dtype;
	const char *y = on->out[0];
	kiln_value *out, *t1, *t2, *t3, *t4;

	if (strcmp(op, "Size") == 0) {
		/* Shapes are static: the element count is a constant (Identity of
		 * an i64 constant folds away at import). */
		kiln_value *count = kiln_onnx_scalar(c, on->name, "numel", KILN_DT_I64,
		                                     (double)kiln_type_numel(&x[0]->type));
		if (!count)
			return KILN_ERR_OOM;
		return FIN1(KILN_OP_IDENTITY, count);
	}
	if (strcmp(op, "CastLike") == 0) {
		/* Cast to the second input's dtype (saturate only matters for float8). */
		kiln_node *n;
		KILN_TRY(kiln_onnx_add(c, on, KILN_OP_CAST, NULL, x, 1, &y, 1, &n));
		if (kiln_node_set_int(c->g, n, "to", kiln_dtype_to_onnx(x[1]->type.dtype)) != KILN_OK)
			return kiln_diag_error(c->d, KILN_ERR_OOM, NULL, "out of memory");
		return kiln_onnx_finish(c, n);
	}
	if (strcmp(op, "GreaterOrEqual") == 0 || strcmp(op, "LessOrEqual") == 0) {
		/* Or(Greater|Less, Equal), with Or on bools written as Where. */
		kiln_value *yes = kiln_onnx_scalar(c, on->name, "true", KILN_DT_BOOL, 1.0);
		if (!yes)
			return KILN_ERR_OOM;
		kiln_op cmp = op[0] == 'G' ? KILN_OP_GREATER : KILN_OP_LESS;
		KILN_TRY(OP2(cmp, op[0] == 'G' ? "greater" : "less", x[0], x[1], &t1));
		KILN_TRY(OP2(KILN_OP_EQUAL, "equal", x[0], x[1], &t2));
		return FIN3(KILN_OP_WHERE, t1, yes, t2);
	}
	if (strcmp(op, "Sum") == 0 || strcmp(op, "Mean") == 0) {
		bool mean = op[0] == 'M';
		if (on->n_in == 1)
			return FIN1(KILN_OP_IDENTITY, x[0]);
		kiln_value *acc = x[0];
		for (int i = 1; i < on->n_in; i++) {
			bool last = i == on->n_in - 1 && !mean;
			KILN_TRY(kiln_onnx_helper(c, on, KILN_OP_ADD, last ? NULL : "add",
			                          (kiln_value *[]){acc, x[i]}, 2, last ? y : NULL, &acc));
		}
		if (!mean)
			return KILN_OK;
		kiln_value *count = kiln_onnx_scalar(c, on->name, "count", dt, on->n_in);
		if (!count)
			return KILN_ERR_OOM;
		return FIN2(KILN_OP_DIV, acc, count);
	}

	kiln_value *zero = kiln_onnx_scalar(c, on->name, "zero", dt, 0.0);
	if (!zero)
		return KILN_ERR_OOM;
	if (strcmp(op, "Softplus") == 0)
		return softplus(c, on, x[0], y, &out);
	if (strcmp(op, "Mish") == 0) {
		/* x * tanh(softplus(x)) */
		KILN_TRY(softplus(c, on, x[0], NULL, &t1));
		KILN_TRY(OP1(KILN_OP_TANH, "tanh", t1, &t2));
		return FIN2(KILN_OP_MUL, x[0], t2);
	}
	kiln_value *one = kiln_onnx_scalar(c, on->name, "one", dt, 1.0);
	if (!one)
		return KILN_ERR_OOM;
	if (strcmp(op, "Softsign") == 0) {
		/* x / (1 + |x|) */
		KILN_TRY(OP1(KILN_OP_ABS, "abs", x[0], &t1));
		KILN_TRY(OP2(KILN_OP_ADD, "add", one, t1, &t2));
		return FIN2(KILN_OP_DIV, x[0], t2);
	}

	bool selu = strcmp(op, "Selu") == 0;
	float alpha_f = kiln_onnx_attr_float(on, "alpha", selu ? 1.67326319217681884765625f : 1.0f);
	kiln_value *alpha = kiln_onnx_scalar(c, on->name, "alpha", dt, alpha_f);
	if (!alpha)
		return KILN_ERR_OOM;
	if (strcmp(op, "ThresholdedRelu") == 0) {
		/* x > alpha ? x : 0 */
		KILN_TRY(OP2(KILN_OP_GREATER, "greater", x[0], alpha, &t1));
		return FIN3(KILN_OP_WHERE, t1, x[0], zero);
	}
	if (strcmp(op, "Elu") == 0) {
		/* x < 0 ? alpha * (exp(x) - 1) : x */
		KILN_TRY(OP2(KILN_OP_LESS, "less", x[0], zero, &t1));
		KILN_TRY(OP1(KILN_OP_EXP, "exp", x[0], &t2));
		KILN_TRY(OP2(KILN_OP_SUB, "sub", t2, one, &t3));
		KILN_TRY(OP2(KILN_OP_MUL, "mul", alpha, t3, &t4));
		return FIN3(KILN_OP_WHERE, t1, t4, x[0]);
	}
	if (strcmp(op, "Celu") == 0) {
		/* max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) */
		kiln_value *t5, *t6;
		KILN_TRY(OP2(KILN_OP_MAX, "max", zero, x[0], &t1));
		KILN_TRY(OP2(KILN_OP_DIV, "div", x[0], alpha, &t2));
		KILN_TRY(OP1(KILN_OP_EXP, "exp", t2, &t3));
		KILN_TRY(OP2(KILN_OP_SUB, "sub", t3, one, &t4));
		KILN_TRY(OP2(KILN_OP_MUL, "mul", alpha, t4, &t5));
		KILN_TRY(OP2(KILN_OP_MIN, "min", zero, t5, &t6));
		return FIN2(KILN_OP_ADD, t1, t6);
	}
	/* Selu: x > 0 ? gamma * x : gamma * (alpha * exp(x) - alpha) */
	kiln_value *gamma = kiln_onnx_scalar(c, on->name, "gamma", dt,
	                                     kiln_onnx_attr_float(on, "gamma", 1.05070102214813232421875f));
	kiln_value *t5, *t6;
	if (!gamma)
		return KILN_ERR_OOM;
	KILN_TRY(OP2(KILN_OP_GREATER, "greater", x[0], zero, &t1));
	KILN_TRY(OP2(KILN_OP_MUL, "pos", gamma, x[0], &t2));
	KILN_TRY(OP1(KILN_OP_EXP, "exp", x[0], &t3));
	KILN_TRY(OP2(KILN_OP_MUL, "mul", alpha, t3, &t4));
	KILN_TRY(OP2(KILN_OP_SUB, "sub", t4, alpha, &t5));
	KILN_TRY(OP2(KILN_OP_MUL, "neg", gamma, t5, &t6));
	return FIN3(KILN_OP_WHERE, t1, t2, t6);
}
