/* test_onnx_import.c — the ONNX importer on models built here with the
 * protobuf-c structs: a valid model with every kind of weight storage, old
 * opsets canonicalised, functions expanded, and each error path's exact
 * message; plus a no-crash sweep over the ONNX backend node tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir.h"
#include "onnx.pb-c.h"

/* ---- building models ------------------------------------------------------ */

/* Everything a model is made of is malloc'd here and freed by pool_free. */
typedef struct pool {
	void *p[4096];
	int n;
} pool;

static void *pa(pool *pl, size_t size)
{
	void *p = calloc(1, size ? size : 1);
	assert_non_null(p);
	assert_true(pl->n < 4096);
	pl->p[pl->n++] = p;
	return p;
}

static char *ps(pool *pl, const char *s)
{
	char *p = pa(pl, strlen(s) + 1);
	strcpy(p, s);
	return p;
}

static void pool_free(pool *pl)
{
	for (int i = 0; i < pl->n; i++)
		free(pl->p[i]);
	pl->n = 0;
}

typedef struct model {
	pool pl;
	Onnx__ModelProto m;
	Onnx__GraphProto g;
	Onnx__OperatorSetIdProto *opsets[4];
	Onnx__NodeProto *nodes[64];
	Onnx__TensorProto *inits[16];
	Onnx__ValueInfoProto *inputs[8], *outputs[8];
	Onnx__FunctionProto *functions[4];
	char dir[64];
	char path[96];
} model;

static void add_opset(model *mo, const char *domain, int64_t version)
{
	Onnx__OperatorSetIdProto *o = pa(&mo->pl, sizeof *o);
	onnx__operator_set_id_proto__init(o);
	o->domain = ps(&mo->pl, domain);
	o->has_version = true;
	o->version = version;
	mo->opsets[mo->m.n_opset_import++] = o;
}

static model *model_new(int64_t opset)
{
	model *mo = calloc(1, sizeof *mo);
	assert_non_null(mo);
	onnx__model_proto__init(&mo->m);
	onnx__graph_proto__init(&mo->g);
	mo->m.has_ir_version = true;
	mo->m.ir_version = 8;
	mo->m.graph = &mo->g;
	mo->m.opset_import = mo->opsets;
	mo->m.functions = mo->functions;
	mo->g.name = ps(&mo->pl, "test");
	mo->g.node = mo->nodes;
	mo->g.initializer = mo->inits;
	mo->g.input = mo->inputs;
	mo->g.output = mo->outputs;
	add_opset(mo, "", opset);
	snprintf(mo->dir, sizeof mo->dir, "/tmp/kiln_onnx_XXXXXX");
	assert_non_null(mkdtemp(mo->dir));
	snprintf(mo->path, sizeof mo->path, "%s/model.onnx", mo->dir);
	return mo;
}

static void model_free(model *mo)
{
	DIR *dir = opendir(mo->dir);
	if (dir) {
		struct dirent *e;
		char p[400];
		while ((e = readdir(dir)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
				snprintf(p, sizeof p, "%s/%s", mo->dir, e->d_name);
				unlink(p);
			}
		closedir(dir);
	}
	rmdir(mo->dir);
	pool_free(&mo->pl);
	free(mo);
}

/* dims: -1 is a symbolic dim named "batch", -2 a dim with no value. */
static Onnx__ValueInfoProto *vinfo(model *mo, const char *name, int32_t elem, int rank,
                                   const int64_t *dims)
{
	pool *pl = &mo->pl;
	Onnx__ValueInfoProto *vi = pa(pl, sizeof *vi);
	onnx__value_info_proto__init(vi);
	vi->name = ps(pl, name);
	Onnx__TypeProto *tp = pa(pl, sizeof *tp);
	onnx__type_proto__init(tp);
	Onnx__TypeProto__Tensor *tt = pa(pl, sizeof *tt);
	onnx__type_proto__tensor__init(tt);
	tt->has_elem_type = true;
	tt->elem_type = elem;
	tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
	tp->tensor_type = tt;
	vi->type = tp;
	if (rank < 0)
		return vi;
	Onnx__TensorShapeProto *sh = pa(pl, sizeof *sh);
	onnx__tensor_shape_proto__init(sh);
	sh->n_dim = (size_t)rank;
	sh->dim = pa(pl, (size_t)rank * sizeof *sh->dim);
	for (int i = 0; i < rank; i++) {
		Onnx__TensorShapeProto__Dimension *d = pa(pl, sizeof *d);
		onnx__tensor_shape_proto__dimension__init(d);
		if (dims[i] >= 0) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
			d->dim_value = dims[i];
		} else if (dims[i] == -1) {
			d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
			d->dim_param = ps(pl, "batch");
		}
		sh->dim[i] = d;
	}
	tt->shape = sh;
	return vi;
}

static void input(model *mo, const char *name, int32_t elem, int rank, const int64_t *dims)
{
	mo->inputs[mo->g.n_input++] = vinfo(mo, name, elem, rank, dims);
}

static void output(model *mo, const char *name, int32_t elem)
{
	mo->outputs[mo->g.n_output++] = vinfo(mo, name, elem, -1, NULL);
}

static Onnx__TensorProto *tensor(model *mo, const char *name, int32_t dtype, int rank,
                                 const int64_t *dims)
{
	Onnx__TensorProto *t = pa(&mo->pl, sizeof *t);
	onnx__tensor_proto__init(t);
	t->name = ps(&mo->pl, name);
	t->has_data_type = true;
	t->data_type = dtype;
	t->n_dims = (size_t)rank;
	t->dims = pa(&mo->pl, (size_t)(rank ? rank : 1) * sizeof *t->dims);
	memcpy(t->dims, dims, (size_t)rank * sizeof *dims);
	return t;
}

static void set_raw(model *mo, Onnx__TensorProto *t, const void *data, size_t bytes)
{
	t->has_raw_data = true;
	t->raw_data.len = bytes;
	t->raw_data.data = pa(&mo->pl, bytes);
	memcpy(t->raw_data.data, data, bytes);
}

static void set_floats(model *mo, Onnx__TensorProto *t, const float *v, size_t n)
{
	t->n_float_data = n;
	t->float_data = pa(&mo->pl, n * sizeof *v);
	memcpy(t->float_data, v, n * sizeof *v);
}

static void init(model *mo, Onnx__TensorProto *t)
{
	mo->inits[mo->g.n_initializer++] = t;
}

static char **strs(pool *pl, const char *csv, size_t *n)
{
	char **v = pa(pl, 16 * sizeof *v);
	*n = 0;
	if (!csv)
		return v;
	const char *p = csv;
	for (;;) {
		size_t len = strcspn(p, ",");
		char *s = pa(pl, len + 1);
		memcpy(s, p, len);
		v[(*n)++] = s;
		if (!p[len])
			break;
		p += len + 1;
	}
	return v;
}

/* ins/outs: comma-separated names ("" entries are omitted optionals). */
static Onnx__NodeProto *mknode(pool *pl, const char *op, const char *name, const char *ins,
                               const char *outs)
{
	Onnx__NodeProto *n = pa(pl, sizeof *n);
	onnx__node_proto__init(n);
	n->op_type = ps(pl, op);
	n->name = ps(pl, name);
	n->input = strs(pl, ins, &n->n_input);
	n->output = strs(pl, outs, &n->n_output);
	n->attribute = pa(pl, 8 * sizeof *n->attribute);
	return n;
}

static Onnx__NodeProto *node(model *mo, const char *op, const char *name, const char *ins,
                             const char *outs)
{
	Onnx__NodeProto *n = mknode(&mo->pl, op, name, ins, outs);
	mo->nodes[mo->g.n_node++] = n;
	return n;
}

static Onnx__AttributeProto *attr(pool *pl, Onnx__NodeProto *n, const char *name,
                                  Onnx__AttributeProto__AttributeType type)
{
	Onnx__AttributeProto *a = pa(pl, sizeof *a);
	onnx__attribute_proto__init(a);
	a->name = ps(pl, name);
	a->has_type = true;
	a->type = type;
	n->attribute[n->n_attribute++] = a;
	return a;
}

static void attr_i(model *mo, Onnx__NodeProto *n, const char *name, int64_t v)
{
	Onnx__AttributeProto *a = attr(&mo->pl, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
	a->has_i = true;
	a->i = v;
}

static void attr_f(model *mo, Onnx__NodeProto *n, const char *name, float v)
{
	Onnx__AttributeProto *a = attr(&mo->pl, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
	a->has_f = true;
	a->f = v;
}

static void attr_ints(model *mo, Onnx__NodeProto *n, const char *name, const int64_t *v,
                      size_t count)
{
	Onnx__AttributeProto *a = attr(&mo->pl, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
	a->n_ints = count;
	a->ints = pa(&mo->pl, count * sizeof *v);
	memcpy(a->ints, v, count * sizeof *v);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static uint8_t *pack(model *mo, size_t *len)
{
	mo->m.opset_import = mo->opsets;
	*len = onnx__model_proto__get_packed_size(&mo->m);
	uint8_t *buf = malloc(*len);
	assert_non_null(buf);
	assert_int_equal(onnx__model_proto__pack(&mo->m, buf), *len);
	return buf;
}

static void save(model *mo)
{
	size_t len;
	uint8_t *buf = pack(mo, &len);
	write_bytes(mo->path, buf, len);
	free(buf);
}

/* Imports mo; messages are prefixed "model.onnx: ". */
static kiln_status load(model *mo, const kiln_import_opts *opts, kiln_graph **g, kiln_diag *d)
{
	save(mo);
	kiln_diag_init(d, "model.onnx");
	d->fn = NULL;
	return kiln_onnx_import(mo->path, opts, g, d);
}

static void expect_error(model *mo, const kiln_import_opts *opts, kiln_status want,
                         const char *msg)
{
	kiln_graph *g = NULL;
	kiln_diag d;
	kiln_status s = load(mo, opts, &g, &d);
	assert_null(g);
	assert_string_equal(d.last, msg);
	assert_int_equal(s, want);
}

static const int64_t d4[] = {4}, d1[] = {1};

/* ---- a valid model -------------------------------------------------------- */

/* A model-local function local.AddRelu(a, b) -> c = Relu(Add(a, b) * k),
 * k an attribute reference with a default. */
static void add_function(model *mo)
{
	pool *pl = &mo->pl;
	Onnx__FunctionProto *f = pa(pl, sizeof *f);
	onnx__function_proto__init(f);
	f->name = ps(pl, "AddRelu");
	f->domain = ps(pl, "local");
	f->input = strs(pl, "a,b", &f->n_input);
	f->output = strs(pl, "c", &f->n_output);
	f->node = pa(pl, 4 * sizeof *f->node);
	f->node[f->n_node++] = mknode(pl, "Add", "add", "a,b", "t");
	Onnx__NodeProto *lk = mknode(pl, "LeakyRelu", "relu", "t", "c");
	Onnx__AttributeProto *ref = attr(pl, lk, "alpha", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
	ref->ref_attr_name = ps(pl, "slope");
	f->node[f->n_node++] = lk;
	f->attribute_proto = pa(pl, sizeof *f->attribute_proto);
	Onnx__AttributeProto *dflt = pa(pl, sizeof *dflt);
	onnx__attribute_proto__init(dflt);
	dflt->name = ps(pl, "slope");
	dflt->has_type = true;
	dflt->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
	dflt->has_f = true;
	dflt->f = 0.25f;
	f->attribute_proto[f->n_attribute_proto++] = dflt;
	mo->functions[mo->m.n_functions++] = f;
	add_opset(mo, "local", 1);
}

static void test_valid_model(void **state)
{
	model *mo = model_new(17);
	const int64_t xd[] = {1, 3, 4, 4}, wd[] = {2, 3, 3, 3}, bd[] = {2};
	input(mo, "x", 1, 4, xd);
	input(mo, "scale", 1, 1, d1); /* also an initializer: a constant */
	float w[54], b[2] = {0.5f, -1.0f}, scale = 2.0f, ext[2] = {7.0f, 9.0f};
	for (int i = 0; i < 54; i++)
		w[i] = (float)i * 0.01f;
	Onnx__TensorProto *tw = tensor(mo, "W", 1, 4, wd);
	set_raw(mo, tw, w, sizeof w);
	init(mo, tw);
	Onnx__TensorProto *tb = tensor(mo, "B", 1, 1, bd);
	set_floats(mo, tb, b, 2);
	init(mo, tb);
	Onnx__TensorProto *ts = tensor(mo, "scale", 1, 1, d1);
	set_floats(mo, ts, &scale, 1);
	init(mo, ts);
	/* External data: E (f32[1]) lives at offset 4 of weights.bin. */
	char side[128];
	snprintf(side, sizeof side, "%s/weights.bin", mo->dir);
	float blob[3] = {0.0f, ext[1], 3.0f};
	write_bytes(side, blob, sizeof blob);
	Onnx__TensorProto *te = tensor(mo, "E", 1, 1, d1);
	te->has_data_location = true;
	te->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	te->external_data = pa(&mo->pl, 3 * sizeof *te->external_data);
	const char *kv[][2] = {{"location", "weights.bin"}, {"offset", "4"}, {"length", "4"}};
	for (int i = 0; i < 3; i++) {
		Onnx__StringStringEntryProto *e = pa(&mo->pl, sizeof *e);
		onnx__string_string_entry_proto__init(e);
		e->key = ps(&mo->pl, kv[i][0]);
		e->value = ps(&mo->pl, kv[i][1]);
		te->external_data[te->n_external_data++] = e;
	}
	init(mo, te);

	Onnx__NodeProto *conv = node(mo, "Conv", "conv", "x,W,B", "c1");
	const int64_t pads[] = {1, 1, 1, 1};
	attr_ints(mo, conv, "pads", pads, 4);
	node(mo, "Relu", "", "c1", "r1");
	node(mo, "Mul", "", "r1,scale", "m");
	Onnx__NodeProto *k = node(mo, "Constant", "k", NULL, "kv");
	attr_f(mo, k, "value_float", -0.5f);
	add_function(mo);
	Onnx__NodeProto *call = node(mo, "AddRelu", "ar", "m,kv", "r");
	call->domain = ps(&mo->pl, "local");
	node(mo, "Add", "fin", "r,E", "y");
	output(mo, "y", 1);

	kiln_graph *g;
	kiln_diag d;
	kiln_status s = load(mo, NULL, &g, &d);
	assert_string_equal(d.last, "");
	assert_int_equal(s, KILN_OK);
	assert_int_equal(g->opset, 17);
	assert_int_equal(g->n_inputs, 1);
	assert_string_equal(g->inputs[0]->name, "x");
	char buf[64];
	assert_string_equal(kiln_type_str(&g->outputs[0]->type, buf, sizeof buf), "f32[1,2,4,4]");
	assert_string_equal(g->outputs[0]->name, "y");

	kiln_value *vw = kiln_graph_find_value(g, "W");
	assert_int_equal(vw->kind, KILN_VALUE_CONST);
	assert_memory_equal(vw->data, w, sizeof w);
	kiln_value *vb = kiln_graph_find_value(g, "B");
	assert_memory_equal(vb->data, b, sizeof b);
	kiln_value *vs = kiln_graph_find_value(g, "scale");
	assert_int_equal(vs->kind, KILN_VALUE_CONST);
	assert_true(*(float *)vs->data == 2.0f);
	kiln_value *vk = kiln_graph_find_value(g, "kv");
	assert_int_equal(vk->kind, KILN_VALUE_CONST);
	assert_int_equal(vk->type.rank, 0);
	assert_true(*(float *)vk->data == -0.5f);
	kiln_value *ve = kiln_graph_find_value(g, "E");
	assert_true(*(float *)ve->data == 9.0f);

	kiln_node *nc = kiln_graph_find_node(g, "conv");
	assert_non_null(nc);
	assert_int_equal(nc->op, KILN_OP_CONV);
	assert_string_equal(nc->origin, "conv");
	const int64_t *pv;
	assert_int_equal(kiln_node_ints(nc, "pads", &pv), 4);
	assert_non_null(kiln_graph_find_node(g, "node_1")); /* the unnamed Relu */
	kiln_node *fa = kiln_graph_find_node(g, "ar/add");
	kiln_node *fr = kiln_graph_find_node(g, "ar/relu");
	assert_non_null(fa);
	assert_non_null(fr);
	assert_int_equal(fa->op, KILN_OP_ADD);
	assert_string_equal(fa->outputs[0]->name, "ar/t");
	assert_ptr_equal(fa->inputs[1], vk);
	assert_int_equal(fr->op, KILN_OP_LEAKY_RELU);
	assert_true(kiln_node_float(fr, "alpha", 0) == 0.25f);
	assert_string_equal(fr->outputs[0]->name, "r");
	assert_int_equal(g->n_nodes, 6);
	kiln_graph_destroy(g);

	/* The call site's attribute beats the function's default. */
	attr_f(mo, call, "slope", 0.125f);
	s = load(mo, NULL, &g, &d);
	assert_int_equal(s, KILN_OK);
	assert_true(kiln_node_float(kiln_graph_find_node(g, "ar/relu"), "alpha", 0) == 0.125f);
	kiln_graph_destroy(g);

	/* Truncations and garbage never crash and always fail. */
	size_t len;
	uint8_t *full = pack(mo, &len);
	const size_t cuts[] = {1, 2, 7, len / 4, len / 3, len / 2, len - 60, len - 1};
	for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
		write_bytes(mo->path, full, cuts[i]);
		kiln_diag_init(&d, "model.onnx");
		d.fn = NULL;
		s = kiln_onnx_import(mo->path, NULL, &g, &d);
		assert_int_not_equal(s, KILN_OK);
		assert_null(g);
		assert_true(strncmp(d.last, "model.onnx: ", 12) == 0);
	}
	write_bytes(mo->path, full, len - 1);
	kiln_diag_init(&d, "model.onnx");
	d.fn = NULL;
	s = kiln_onnx_import(mo->path, NULL, &g, &d);
	assert_int_equal(s, KILN_ERR_INVALID_MODEL);
	assert_string_equal(d.last, "model.onnx: not a valid ONNX model: protobuf parse failed "
	                            "(truncated or corrupt file)");
	free(full);
	model_free(mo);
	(void)state;
}

static void test_garbage_and_wrong_field_type(void **state)
{
	model *mo = model_new(17);
	const char *expect = "model.onnx: not a valid ONNX model: protobuf parse failed "
	                     "(truncated or corrupt file)";
	const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x13, 0x37, 0x00, 0x42, 0x99};
	/* field 7 (graph, a message) written as a varint */
	const uint8_t wrong_type[] = {0x38, 0x01};
	const struct {
		const uint8_t *p;
		size_t n;
	} cases[] = {{garbage, sizeof garbage}, {wrong_type, sizeof wrong_type}};
	for (int i = 0; i < 2; i++) {
		write_bytes(mo->path, cases[i].p, cases[i].n);
		kiln_graph *g;
		kiln_diag d;
		kiln_diag_init(&d, "model.onnx");
		d.fn = NULL;
		assert_int_equal(kiln_onnx_import(mo->path, NULL, &g, &d), KILN_ERR_INVALID_MODEL);
		assert_string_equal(d.last, expect);
	}
	/* A valid empty message is a model without a graph. */
	write_bytes(mo->path, "", 0);
	kiln_graph *g;
	kiln_diag d;
	kiln_diag_init(&d, "model.onnx");
	d.fn = NULL;
	assert_int_equal(kiln_onnx_import(mo->path, NULL, &g, &d), KILN_ERR_INVALID_MODEL);
	assert_string_equal(d.last, "model.onnx: model has no graph");
	model_free(mo);
	(void)state;
}

static void test_missing_file(void **state)
{
	kiln_graph *g;
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	assert_int_equal(kiln_onnx_import("/nonexistent/m.onnx", NULL, &g, &d), KILN_ERR_IO);
	assert_string_equal(d.last, "/nonexistent/m.onnx: cannot open: No such file or directory");
	assert_null(d.file); /* restored */
	(void)state;
}

static void test_unsupported_ops_listed_once(void **state)
{
	model *mo = model_new(17);
	add_opset(mo, "com.acme", 1);
	input(mo, "x", 1, 1, d4);
	node(mo, "Relu", "r", "x", "a");
	node(mo, "NonMaxSuppression", "nms_0", "a", "b");
	node(mo, "NonMaxSuppression", "nms_1", "b", "c");
	Onnx__NodeProto *foo = node(mo, "Foo", "foo", "c", "d");
	foo->domain = ps(&mo->pl, "com.acme");
	node(mo, "NonMaxSuppression", "", "d", "e");
	output(mo, "e", 1);
	expect_error(mo, NULL, KILN_ERR_UNSUPPORTED,
	             "model.onnx: 2 unsupported operators:\n"
	             "  NonMaxSuppression (domain 'ai.onnx', opset 17): 3 nodes, first 'nms_0'\n"
	             "  Foo (domain 'com.acme', opset 1): 1 node, first 'foo'");
	model_free(mo);
	(void)state;
}

/* kiln's own ops (fusion, the NCHWc layout ops) are made by passes, never
 * read from a model: an ONNX node naming one is an unknown op. */
static void test_own_ops_refused(void **state)
{
	model *mo = model_new(17);
	input(mo, "x", 1, 1, d4);
	node(mo, "ReorderToNCHWc", "to", "x", "a");
	node(mo, "ConvNCHWc", "conv", "a", "b");
	node(mo, "fusion", "f", "b", "c");
	output(mo, "c", 1);
	expect_error(mo, NULL, KILN_ERR_UNSUPPORTED,
	             "model.onnx: 3 unsupported operators:\n"
	             "  ReorderToNCHWc (domain 'ai.onnx', opset 17): 1 node, first 'to'\n"
	             "  ConvNCHWc (domain 'ai.onnx', opset 17): 1 node, first 'conv'\n"
	             "  fusion (domain 'ai.onnx', opset 17): 1 node, first 'f'");
	model_free(mo);
	(void)state;
}

static void test_undefined_input_and_cycles(void **state)
{
	model *mo = model_new(17);
	const int64_t xd[] = {1, 1, 3, 3};
	input(mo, "x", 1, 4, xd);
	node(mo, "Conv", "conv", "x,w", "y");
	output(mo, "y", 1);
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: node 'conv' (Conv): input 1 'w' is not produced by any node, "
	             "initializer or graph input");
	model_free(mo);

	/* Out-of-order nodes are sorted; a cycle is an error. */
	mo = model_new(17);
	input(mo, "x", 1, 1, d4);
	node(mo, "Neg", "second", "a", "b");
	node(mo, "Relu", "first", "x", "a");
	output(mo, "b", 1);
	kiln_graph *g;
	kiln_diag d;
	assert_int_equal(load(mo, NULL, &g, &d), KILN_OK);
	assert_string_equal(g->nodes[0]->name, "first");
	assert_string_equal(g->nodes[1]->name, "second");
	kiln_graph_destroy(g);
	mo->nodes[1]->input[0] = ps(&mo->pl, "b");
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: node 'second' (Neg): is part of a cycle (it depends on its own "
	             "outputs)");
	model_free(mo);
	(void)state;
}

static void test_pins(void **state)
{
	model *mo = model_new(17);
	const int64_t xd[] = {-1, 3};
	input(mo, "x", 1, 2, xd);
	node(mo, "Relu", "r", "x", "y");
	output(mo, "y", 1);
	expect_error(mo, NULL, KILN_ERR_SHAPE,
	             "model.onnx: input 'x' has unknown dimension 0 ('batch'); pin it with "
	             "--shape x=1x3");

	kiln_shape_pin pin = {.name = "x", .rank = 2, .dims = {5, 3}};
	kiln_import_opts opts = {.pins = &pin, .n_pins = 1};
	kiln_graph *g;
	kiln_diag d;
	assert_int_equal(load(mo, &opts, &g, &d), KILN_OK);
	char buf[64];
	assert_string_equal(kiln_type_str(&g->inputs[0]->type, buf, sizeof buf), "f32[5,3]");
	assert_string_equal(kiln_type_str(&g->outputs[0]->type, buf, sizeof buf), "f32[5,3]");
	kiln_graph_destroy(g);

	pin.rank = 3;
	expect_error(mo, &opts, KILN_ERR_SHAPE,
	             "model.onnx: --shape for input 'x' has rank 3, but the input has rank 2");
	pin = (kiln_shape_pin){.name = "x", .rank = 2, .dims = {5, 4}};
	expect_error(mo, &opts, KILN_ERR_SHAPE,
	             "model.onnx: --shape for input 'x': dimension 1 is 4, but the model fixes "
	             "it to 3");
	pin.name = "nope";
	expect_error(mo, &opts, KILN_ERR_INVALID_ARG,
	             "model.onnx: --shape names 'nope', which is not a graph input (inputs: 'x')");

	/* A binding turns the input into a constant. */
	float data[6] = {1, -2, 3, -4, 5, -6};
	kiln_input_binding bind = {.name = "x",
	                           .value = {.type = {.dtype = KILN_DT_F32, .rank = 2, .dims = {2, 3}},
	                                     .data = data}};
	kiln_import_opts bo = {.bindings = &bind, .n_bindings = 1};
	assert_int_equal(load(mo, &bo, &g, &d), KILN_OK);
	assert_int_equal(g->n_inputs, 0);
	kiln_value *vx = kiln_graph_find_value(g, "x");
	assert_int_equal(vx->kind, KILN_VALUE_CONST);
	assert_memory_equal(vx->data, data, sizeof data);
	kiln_graph_destroy(g);
	bind.value.type.dtype = KILN_DT_I64;
	expect_error(mo, &bo, KILN_ERR_SHAPE,
	             "model.onnx: binding for input 'x' is i64[2,3], but the input is f32[?,3]");
	model_free(mo);
	(void)state;
}

static void test_opset_range(void **state)
{
	for (int i = 0; i < 2; i++) {
		model *mo = model_new(i ? 29 : 6);
		input(mo, "x", 1, 1, d4);
		node(mo, "Relu", "r", "x", "y");
		output(mo, "y", 1);
		char msg[160];
		snprintf(msg, sizeof msg, "model.onnx: opset %d of domain 'ai.onnx' is not supported "
		                          "(kiln supports opsets 7 to 28)", i ? 29 : 6);
		expect_error(mo, NULL, KILN_ERR_UNSUPPORTED, msg);
		model_free(mo);
	}
	(void)state;
}

static void test_unsupported_dtypes(void **state)
{
	model *mo = model_new(17);
	input(mo, "x", 8, 1, d4);
	node(mo, "Identity", "r", "x", "y");
	output(mo, "y", 8);
	expect_error(mo, NULL, KILN_ERR_UNSUPPORTED,
	             "model.onnx: input 'x' has data type STRING (8), which kiln does not support");
	model_free(mo);

	mo = model_new(17);
	input(mo, "x", 1, 1, d4);
	Onnx__TensorProto *t = tensor(mo, "w", 4, 1, d4);
	uint16_t raw[4] = {0};
	set_raw(mo, t, raw, sizeof raw);
	init(mo, t);
	node(mo, "Add", "a", "x,w", "y");
	output(mo, "y", 1);
	expect_error(mo, NULL, KILN_ERR_UNSUPPORTED,
	             "model.onnx: initializer 'w' has data type UINT16 (4), which kiln does not "
	             "support");
	model_free(mo);
	(void)state;
}

static model *model_with_weight(Onnx__TensorProto **w)
{
	model *mo = model_new(17);
	input(mo, "x", 1, 1, d4);
	*w = tensor(mo, "w", 1, 1, d4);
	init(mo, *w);
	node(mo, "Add", "a", "x,w", "y");
	output(mo, "y", 1);
	return mo;
}

static void test_bad_weights(void **state)
{
	Onnx__TensorProto *w;
	model *mo = model_with_weight(&w);
	float v[4] = {1, 2, 3, 4};
	set_raw(mo, w, v, 8);
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: initializer 'w' has 8 bytes of raw_data, expected 16 for f32[4]");
	w->has_raw_data = false;
	set_floats(mo, w, v, 3);
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: initializer 'w' has 3 values in float_data, expected 4");
	w->n_float_data = 0;

	w->has_data_location = true;
	w->data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
	Onnx__StringStringEntryProto *e = pa(&mo->pl, sizeof *e);
	onnx__string_string_entry_proto__init(e);
	e->key = ps(&mo->pl, "location");
	w->external_data = pa(&mo->pl, sizeof *w->external_data);
	w->external_data[0] = e;
	w->n_external_data = 1;
	e->value = ps(&mo->pl, "../secret.bin");
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: initializer 'w': external data path '../secret.bin' leaves the "
	             "model's directory");
	e->value = ps(&mo->pl, "sub/../../x.bin");
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: initializer 'w': external data path 'sub/../../x.bin' leaves "
	             "the model's directory");
	e->value = ps(&mo->pl, "/etc/passwd");
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: initializer 'w': external data path '/etc/passwd' is absolute; "
	             "it must be relative to the model's directory");
	char side[128];
	snprintf(side, sizeof side, "%s/short.bin", mo->dir);
	write_bytes(side, v, 12);
	e->value = ps(&mo->pl, "short.bin");
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: initializer 'w': external data 'short.bin' has 12 bytes, but "
	             "offset 0 + length 16 runs past its end");
	model_free(mo);
	(void)state;
}

/* Opset-11 forms become opset-21 forms. */
static void test_canonicalise_old_opsets(void **state)
{
	model *mo = model_new(11);
	const int64_t xd[] = {2, 3, 4}, axes[] = {0};
	input(mo, "x", 1, 3, xd);
	Onnx__NodeProto *sm = node(mo, "Softmax", "sm", "x", "s");
	attr_i(mo, sm, "axis", 1);
	Onnx__NodeProto *un = node(mo, "Unsqueeze", "un", "s", "u");
	attr_ints(mo, un, "axes", axes, 1);
	Onnx__NodeProto *rs = node(mo, "ReduceSum", "rs", "u", "r");
	attr_ints(mo, rs, "axes", axes, 1);
	attr_i(mo, rs, "keepdims", 0);
	node(mo, "Softplus", "sp", "r", "y");
	output(mo, "y", 1);
	kiln_graph *g;
	kiln_diag d;
	kiln_status s = load(mo, NULL, &g, &d);
	assert_string_equal(d.last, "");
	assert_int_equal(s, KILN_OK);
	kiln_node *fl = kiln_graph_find_node(g, "sm/flatten");
	assert_non_null(fl);
	assert_int_equal(fl->op, KILN_OP_FLATTEN);
	assert_int_equal(kiln_node_int(fl, "axis", -1), 1);
	kiln_node *n = kiln_graph_find_node(g, "sm");
	assert_int_equal(n->op, KILN_OP_SOFTMAX);
	assert_int_equal(kiln_node_int(n, "axis", -1), 1);
	kiln_node *re = kiln_graph_find_node(g, "sm/reshape");
	assert_int_equal(re->op, KILN_OP_RESHAPE);
	assert_string_equal(re->outputs[0]->name, "s");
	char buf[64];
	assert_string_equal(kiln_type_str(&re->outputs[0]->type, buf, sizeof buf), "f32[2,3,4]");
	n = kiln_graph_find_node(g, "un");
	assert_int_equal(n->n_inputs, 2);
	assert_int_equal(n->inputs[1]->kind, KILN_VALUE_CONST);
	assert_int_equal(n->n_attrs, 0);
	n = kiln_graph_find_node(g, "rs");
	assert_int_equal(n->n_inputs, 2);
	assert_int_equal(kiln_node_int(n, "keepdims", 1), 0);
	assert_int_equal(kiln_graph_find_node(g, "sp/exp")->op, KILN_OP_EXP);
	assert_int_equal(kiln_graph_find_node(g, "sp/add")->op, KILN_OP_ADD);
	n = kiln_graph_find_node(g, "sp");
	assert_int_equal(n->op, KILN_OP_LOG);
	assert_string_equal(n->outputs[0]->name, "y");
	assert_string_equal(kiln_type_str(&g->outputs[0]->type, buf, sizeof buf), "f32[2,3,4]");
	kiln_graph_destroy(g);
	model_free(mo);
	(void)state;
}

static kiln_status refuse_fold(void *user, const kiln_node *n, void **out, kiln_diag *d)
{
	(void)out;
	++*(int *)user;
	return kiln_diag_error(d, KILN_ERR_INTERNAL, n, "fold callback must not run");
}

/* Shape of a static value folds without the callback. */
static void test_fold_shape(void **state)
{
	model *mo = model_new(17);
	const int64_t xd[] = {2, 6};
	input(mo, "x", 1, 2, xd);
	node(mo, "Shape", "sh", "x", "s");
	node(mo, "Reshape", "re", "x,s", "y");
	output(mo, "y", 1);
	int calls = 0;
	kiln_import_opts opts = {.fold = refuse_fold, .fold_user = &calls};
	kiln_graph *g;
	kiln_diag d;
	assert_int_equal(load(mo, &opts, &g, &d), KILN_OK);
	assert_int_equal(calls, 0);
	assert_int_equal(g->n_nodes, 1);
	kiln_value *s = kiln_graph_find_value(g, "s");
	assert_int_equal(s->kind, KILN_VALUE_CONST);
	assert_int_equal(((int64_t *)s->data)[0], 2);
	assert_int_equal(((int64_t *)s->data)[1], 6);
	kiln_graph_destroy(g);
	model_free(mo);
	(void)state;
}

static void test_output_type_mismatch(void **state)
{
	model *mo = model_new(17);
	input(mo, "x", 1, 1, d4);
	node(mo, "Relu", "r", "x", "y");
	output(mo, "y", 7);
	expect_error(mo, NULL, KILN_ERR_SHAPE,
	             "model.onnx: graph output 'y' is declared INT64, but kiln infers f32");
	model_free(mo);
	mo = model_new(17);
	input(mo, "x", 1, 1, d4);
	node(mo, "Relu", "r", "x", "y");
	output(mo, "z", 1);
	expect_error(mo, NULL, KILN_ERR_INVALID_MODEL,
	             "model.onnx: graph output 'z' is not produced by any node, initializer or "
	             "graph input");
	model_free(mo);
	(void)state;
}

static void test_read_tensor(void **state)
{
	model *mo = model_new(17);
	const int64_t dims[] = {2, 2};
	Onnx__TensorProto *t = tensor(mo, "input_0", 7, 2, dims);
	int64_t v[4] = {1, -2, 3, 1LL << 40};
	t->n_int64_data = 4;
	t->int64_data = v;
	size_t len = onnx__tensor_proto__get_packed_size(t);
	uint8_t *buf = malloc(len);
	onnx__tensor_proto__pack(t, buf);
	char path[128];
	snprintf(path, sizeof path, "%s/input_0.pb", mo->dir);
	write_bytes(path, buf, len);
	free(buf);
	kiln_tensor out;
	char *name;
	kiln_diag d;
	kiln_diag_init(&d, NULL);
	d.fn = NULL;
	assert_int_equal(kiln_onnx_read_tensor(path, &out, &name, &d), KILN_OK);
	assert_string_equal(name, "input_0");
	assert_int_equal(out.type.dtype, KILN_DT_I64);
	assert_int_equal(out.type.rank, 2);
	assert_memory_equal(out.data, v, sizeof v);
	free(out.data);
	free(name);
	model_free(mo);
	(void)state;
}

/* Every ONNX backend node test imports or fails cleanly (run under ASan). */
static void test_nodetests_never_crash(void **state)
{
	const char *root = "/tmp/nodetests";
	DIR *dir = opendir(root);
	if (!dir) {
		print_message("skipped: %s does not exist (generate the ONNX node tests)\n", root);
		skip();
	}
	struct dirent *e;
	int n = 0, ok = 0;
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		char path[512];
		snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
		if (access(path, R_OK) != 0)
			continue;
		kiln_graph *g;
		kiln_diag d;
		kiln_diag_init(&d, NULL);
		d.fn = NULL;
		kiln_status s = kiln_onnx_import(path, NULL, &g, &d);
		if (s == KILN_OK) {
			ok++;
			kiln_graph_destroy(g);
		} else {
			assert_null(g);
			assert_true(d.last[0] != 0);
		}
		n++;
	}
	closedir(dir);
	print_message("imported %d of %d node-test models\n", ok, n);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid_model),
		cmocka_unit_test(test_garbage_and_wrong_field_type),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_unsupported_ops_listed_once),
		cmocka_unit_test(test_own_ops_refused),
		cmocka_unit_test(test_undefined_input_and_cycles),
		cmocka_unit_test(test_pins),
		cmocka_unit_test(test_opset_range),
		cmocka_unit_test(test_unsupported_dtypes),
		cmocka_unit_test(test_bad_weights),
		cmocka_unit_test(test_canonicalise_old_opsets),
		cmocka_unit_test(test_fold_shape),
		cmocka_unit_test(test_output_type_mismatch),
		cmocka_unit_test(test_read_tensor),
		cmocka_unit_test(test_nodetests_never_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
