/* onnx_internal.h — the ONNX importer's one internal header.
 *
 * Consumes: an ONNX ModelProto file (protobuf-c, schema in onnx.proto).
 * Produces: a shape-inferred kiln graph in the opset-21 canonical forms.
 *
 *   import.c     kiln_onnx_import: file, opsets, inputs and pins, node
 *                ordering, the unsupported-op census, canonicalisation of
 *                older opsets, attributes, shape inference and folding, outputs
 *   tensor.c     TensorProto decoding (typed fields, raw_data, external
 *                data), dtype codes, kiln_onnx_read_tensor
 *   functions.c  model-local FunctionProto expansion and the standard
 *                function-bodied ops kiln builds from ops.def ops
 */
#ifndef KILN_ONNX_INTERNAL_H
#define KILN_ONNX_INTERNAL_H

#include "ir.h"
#include "onnx.pb-c.h"

/* Default-domain opsets kiln imports; 11..21 is the tested range, the newer
 * ones only added dtypes to the ops kiln has. */
#define KILN_ONNX_OPSET_MIN 7
#define KILN_ONNX_OPSET_MAX 28

/* protobuf-c leaves absent optional strings NULL. */
#define KILN_ONNX_STR(s) ((s) ? (s) : "")

/* ---- a string-keyed hash map (import.c); keys are not copied ---------- */

typedef struct kiln_onnx_map {
	const char **keys;
	void **vals;
	size_t cap, n;
} kiln_onnx_map;

void *kiln_onnx_map_get(const kiln_onnx_map *m, const char *key);
/* Inserts or replaces; false on OOM. */
bool kiln_onnx_map_put(kiln_onnx_map *m, const char *key, void *val);
void kiln_onnx_map_free(kiln_onnx_map *m);

/* ---- import state ------------------------------------------------------ */

typedef struct kiln_onnx_ctx {
	kiln_graph *g;
	kiln_diag *d;
	const kiln_import_opts *opts;
	const char *dir;        /* its directory, for external data */
	Onnx__ModelProto *model;
	int64_t opset;          /* default-domain opset of the model */
	kiln_arena *scratch;    /* freed at the end of the import */
	kiln_onnx_map values;   /* ONNX value name -> kiln_value* */
	kiln_onnx_map reserved; /* every value name the model declares */
	kiln_onnx_map node_names;
	kiln_onnx_map functions; /* "domain\nname" -> Onnx__FunctionProto* */
} kiln_onnx_ctx;

/* One ONNX node about to be built, with names resolved (a graph node, or a
 * node of an expanded function body). Lives in the scratch arena. */
typedef struct kiln_onnx_node {
	const char *op_type;
	const char *domain;  /* "" for the default domain */
	const char *name;    /* unique kiln node name */
	int n_in;
	const char **in;     /* "" for an omitted input */
	int n_out;
	const char **out;    /* "" for an omitted output */
	int n_attr;
	Onnx__AttributeProto **attr;
	int64_t opset;       /* default-domain opset in effect */
	int depth;           /* function nesting depth */
} kiln_onnx_node;

/* Reports "node 'NAME' (OP): MSG" for an ONNX node not (yet) in the graph. */
kiln_status kiln_onnx_node_error(kiln_onnx_ctx *c, const kiln_onnx_node *on,
                                 kiln_status st, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

bool kiln_onnx_is_default_domain(const char *domain);
/* The key of a model-local function in c->functions (scratch arena). */
const char *kiln_onnx_function_key(kiln_onnx_ctx *c, const char *domain, const char *name);

/* Builds one ONNX node (any kind: ops.def op, Constant, local function,
 * standard function) into the graph. */
kiln_status kiln_onnx_emit(kiln_onnx_ctx *c, const kiln_onnx_node *on);

/* The value an ONNX input name refers to, or an error naming input i. */
kiln_status kiln_onnx_input(kiln_onnx_ctx *c, const kiln_onnx_node *on, int i,
                            kiln_value **out);
/* A value name derived from `base` + `suffix`, unused so far (arena copy). */
const char *kiln_onnx_fresh_value_name(kiln_onnx_ctx *c, const char *base, const char *suffix);
/* A node name derived from base + suffix, unused so far; registered. */
const char *kiln_onnx_fresh_node_name(kiln_onnx_ctx *c, const char *base, const char *suffix);
/* A constant named after base/suffix. NULL on OOM (reported). */
kiln_value *kiln_onnx_const(kiln_onnx_ctx *c, const char *base, const char *suffix,
                            const kiln_type *t, const void *data);
/* A rank-0 constant of dtype dt holding v (converted). NULL on OOM (reported). */
kiln_value *kiln_onnx_scalar(kiln_onnx_ctx *c, const char *base, const char *suffix,
                             kiln_dtype dt, double v);
/* Adds a node for `on`: named on->name when suffix is NULL, else a fresh
 * "NAME/suffix"; with n_out outputs named out_names[i] (NULL or "": fresh
 * names). Attributes are set by the caller, then kiln_onnx_finish. */
kiln_status kiln_onnx_add(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_op op,
                          const char *suffix, kiln_value *const *ins, int n_in,
                          const char *const *out_names, int n_out, kiln_node **out);
/* Shape inference, registration of the outputs' names, folding. */
kiln_status kiln_onnx_finish(kiln_onnx_ctx *c, kiln_node *n);
/* add + finish for a one-output helper without attributes. */
kiln_status kiln_onnx_helper(kiln_onnx_ctx *c, const kiln_onnx_node *on, kiln_op op,
                             const char *suffix, kiln_value *const *ins, int n_in,
                             const char *out_name, kiln_value **out);

/* The attribute `name` of an ONNX node, or NULL. */
const Onnx__AttributeProto *kiln_onnx_attr(const kiln_onnx_node *on, const char *name);
/* Its float value, or dflt when absent. */
float kiln_onnx_attr_float(const kiln_onnx_node *on, const char *name, float dflt);

/* ---- tensor.c ---------------------------------------------------------- */

/* "FLOAT", "STRING", ... for messages ("UNKNOWN" for codes past the table). */
const char *kiln_onnx_dtype_name(int32_t code);

/* Reads the type of a TensorProto; `what` names it in messages
 * ("initializer 'w'"). */
kiln_status kiln_onnx_tensor_type(const Onnx__TensorProto *tp, const char *what,
                                  kiln_type *t, kiln_diag *d);
/* Fills dst (kiln_type_bytes(t) bytes) from the tensor's typed fields,
 * raw_data or external data (resolved against dir). */
kiln_status kiln_onnx_tensor_data(const Onnx__TensorProto *tp, const char *what,
                                  const char *dir, const kiln_type *t, void *dst,
                                  kiln_diag *d);

/* Reads a whole file into a malloc'd buffer. */
kiln_status kiln_onnx_read_file(const char *path, uint8_t **buf, size_t *len, kiln_diag *d);
/* The directory part of path ("." if none), in a malloc'd string. */
char *kiln_onnx_dirname(const char *path);

/* ---- functions.c ------------------------------------------------------- */

/* True for the function-bodied ops functions.c builds (Softplus, Mish, ...). */
bool kiln_onnx_is_std_function(const char *op_type);
kiln_status kiln_onnx_expand_std(kiln_onnx_ctx *c, const kiln_onnx_node *on);
/* Expands a call of model-local function f inline. */
kiln_status kiln_onnx_expand_function(kiln_onnx_ctx *c, const kiln_onnx_node *on,
                                      const Onnx__FunctionProto *f);
/* The default-domain opset a function body uses (its own import, else the model's). */
int64_t kiln_onnx_function_opset(const kiln_onnx_ctx *c, const Onnx__FunctionProto *f);

#endif
