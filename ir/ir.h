/* ir.h — kiln's tensor IR: the one internal header of ir/.
 *
 * A graph is an SSA list of nodes in topological order over typed values.
 * Every value is a graph input, a constant (owning its data) or exactly one
 * node's output. All memory of a graph lives in its arena: destroying the
 * graph is one call.
 *
 *   arena.c      the arena (chunked bump allocator, injectable allocator)
 *   diag.c       diagnostics sink, kiln_status_str
 *   dtype.c      dtypes, f16/bf16 conversions, kiln_type helpers
 *   graph.c      builder: values, nodes, attributes, accessors, op table
 *   shape.c      one shape rule per op (from ops.def), window geometry,
 *                broadcasting
 *   verify.c     the verifier
 *   movement.c   Slice bounds, Pad border modes, Resize taps (shared by the
 *                interpreter and the backends)
 *   cost.c       per-node cost estimates (FLOPs)
 *   text_print.c textual IR printer
 *   text_parse.c textual IR parser
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "kiln.h"

#include <stdarg.h>

/* ---- arena.c ---------------------------------------------------------- */

/* Injectable allocator: tests fail the Nth allocation to check error paths. */
typedef struct kiln_allocator {
	void *(*alloc)(void *user, size_t size);
	void (*free)(void *user, void *ptr);
	void *user;
} kiln_allocator;

typedef struct kiln_arena kiln_arena;

/* a NULL allocator means malloc/free. Returns NULL on OOM. */
kiln_arena *kiln_arena_create(const kiln_allocator *a);
void kiln_arena_destroy(kiln_arena *a);
/* Zeroed memory, 64-byte aligned (tensor data is vector-friendly).
 * Returns NULL on OOM (size 0 gives a valid unique pointer). */
void *kiln_arena_alloc(kiln_arena *a, size_t size);
char *kiln_arena_strdup(kiln_arena *a, const char *s);
char *kiln_arena_strndup(kiln_arena *a, const char *s, size_t n);
void *kiln_arena_memdup(kiln_arena *a, const void *p, size_t size);
/* Bytes handed out so far (for reports and tests). */
size_t kiln_arena_used(const kiln_arena *a);

/* ---- ONNX data-type codes (dtype.c) ------------------------------------ */

/* Cast's `to` (and QuantizeLinear's output_dtype) hold ONNX TensorProto
 * data-type codes in the IR, as in the ONNX file. */
bool kiln_dtype_from_onnx(int64_t code, kiln_dtype *out);
int32_t kiln_dtype_to_onnx(kiln_dtype dt);

/* ---- diag.c ----------------------------------------------------------- */

struct kiln_node;

/* Formats "FILE: node 'NAME' (OP): MSG" (parts omitted when absent), sends it
 * to the sink, and returns `status` so callers can `return kiln_diag_error(...)`. */
kiln_status kiln_diag_error(kiln_diag *d, kiln_status status,
                            const struct kiln_node *node, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
kiln_status kiln_diag_verror(kiln_diag *d, kiln_status status,
                             const struct kiln_node *node, const char *fmt, va_list ap);
/* A line without the "error" count (notes, warnings). */
void kiln_diag_note(kiln_diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* At a public entry point that reads `file`: returns d, or `local` set up as a
 * silent sink when d is NULL, with `file` as the message prefix unless the
 * caller named one. *saved keeps the caller's prefix for kiln_diag_leave. */
kiln_diag *kiln_diag_enter(kiln_diag *d, kiln_diag *local, const char *file, const char **saved);
void kiln_diag_leave(kiln_diag *d, const char *saved);

/* One-line checks. KILN_ENSURE reports and returns `status` from the caller. */
#define KILN_ENSURE(diag, cond, status, node, ...)                                  \
	do {                                                                        \
		if (!(cond))                                                        \
			return kiln_diag_error((diag), (status), (node), __VA_ARGS__); \
	} while (0)
#define KILN_TRY(expr)                                                              \
	do {                                                                        \
		kiln_status kiln_try_s_ = (expr);                                   \
		if (kiln_try_s_ != KILN_OK)                                         \
			return kiln_try_s_;                                         \
	} while (0)

/* ---- ops (graph.c) ---------------------------------------------------- */

enum {
	KILN_OPF_EW = 1 << 0,
	KILN_OPF_BC = 1 << 1,
	KILN_OPF_FUSE = 1 << 2,
	KILN_OPF_QNT = 1 << 3,
	KILN_OPF_COMM = 1 << 4,
};

typedef enum kiln_op {
#define KILN_OP(E, NAME, IN_MIN, IN_MAX, OUT_MIN, OUT_MAX, FLAGS, SHAPE, ATTRS) KILN_OP_##E,
#include "ops.def"
#undef KILN_OP
	KILN_OP_COUNT
} kiln_op;

typedef struct kiln_op_info {
	const char *name;
	int in_min, in_max, out_min, out_max; /* -1: variadic */
	unsigned flags;
	const char *attrs; /* "name:kind,..." */
} kiln_op_info;

const kiln_op_info *kiln_op_get(kiln_op op);
const char *kiln_op_name(kiln_op op);
/* Looks an op up by name ("Conv"); returns false if kiln has no such op. */
bool kiln_op_lookup(const char *name, kiln_op *out);

/* ---- values, attributes, nodes, graphs -------------------------------- */

typedef enum kiln_value_kind {
	KILN_VALUE_INPUT,  /* graph input */
	KILN_VALUE_CONST,  /* constant; `data` holds its elements */
	KILN_VALUE_NODE,   /* output `index` of node `producer` */
} kiln_value_kind;

/* Quantisation parameters of a value (per tensor: axis -1, n 1). */
typedef struct kiln_quant {
	int axis;
	int n;
	float *scale;
	int32_t *zero_point;
} kiln_quant;

typedef struct kiln_value {
	int id;           /* index in graph->values */
	const char *name; /* unique in the graph; never NULL */
	kiln_type type;
	kiln_value_kind kind;
	struct kiln_node *producer; /* KILN_VALUE_NODE only */
	int index;                  /* output index in producer */
	void *data;                 /* KILN_VALUE_CONST: owned by the graph arena;
	                               NULL if the constant was parsed elided */
	const char *elided;         /* summary text of an elided constant, else NULL */
	kiln_quant *quant;          /* NULL unless quantised */
} kiln_value;

typedef enum kiln_attr_kind {
	KILN_ATTR_INT,
	KILN_ATTR_FLOAT,
	KILN_ATTR_STRING,
	KILN_ATTR_INTS,
	KILN_ATTR_FLOATS,
	KILN_ATTR_TENSOR,
	KILN_ATTR_KIND_COUNT
} kiln_attr_kind;

typedef struct kiln_attr {
	const char *name;
	kiln_attr_kind kind;
	int n; /* element count for INTS / FLOATS */
	union {
		int64_t i;
		float f;
		const char *s;
		int64_t *ints;
		float *floats;
		kiln_tensor *t; /* data owned by the graph arena */
	} u;
} kiln_attr;

typedef enum kiln_fusion_kind {
	KILN_FUSION_NONE = 0,
	KILN_FUSION_LOOP,
	KILN_FUSION_OUTPUT,
	KILN_FUSION_REDUCTION,
	KILN_FUSION_KIND_COUNT
} kiln_fusion_kind;

typedef struct kiln_node {
	int id;           /* stable; not an index */
	const char *name; /* unique in the graph; never NULL */
	kiln_op op;
	int n_inputs;
	kiln_value **inputs; /* an entry is NULL for an omitted optional input */
	int n_outputs;
	kiln_value **outputs;
	int n_attrs;
	kiln_attr *attrs;
	/* Provenance: the ONNX node names this node came from (for diagnostics). */
	const char *origin;
	/* KILN_OP_FUSION only: the fused sub-graph. Its inputs bind to the
	 * node's inputs in order and its outputs to the node's outputs; it lives
	 * in the parent graph's arena (never destroyed on its own). */
	struct kiln_graph *body;
} kiln_node;

struct kiln_graph {
	kiln_arena *arena;
	const char *name;
	int opset; /* ONNX default-domain opset the graph was imported at */

	kiln_value **values; /* every value, by id */
	int n_values, cap_values;
	kiln_node **nodes; /* topological order */
	int n_nodes, cap_nodes;
	kiln_value **inputs;
	int n_inputs, cap_inputs;
	kiln_value **outputs;
	int n_outputs, cap_outputs;
	int next_node_id;
	struct kiln_graph *parent; /* the graph whose fusion node owns this body */
};

/* ---- builder (graph.c) ------------------------------------------------ */

kiln_graph *kiln_graph_create(const char *name, const kiln_allocator *a);

/* Names must be unique among values; NULL name gets "v<id>". */
kiln_value *kiln_graph_add_input(kiln_graph *g, const char *name, const kiln_type *t);
/* Copies `data` (kiln_type_bytes(t) bytes) into the arena; NULL data: zeros. */
kiln_value *kiln_graph_add_const(kiln_graph *g, const char *name, const kiln_type *t,
                                 const void *data);
/* Appends a node with its output values created (types zeroed: shape inference
 * fills them). `outputs_names` may be NULL or contain NULLs (auto names);
 * a NULL `name` gives "node_<id>". Inputs may contain NULL (omitted). */
kiln_node *kiln_graph_add_node(kiln_graph *g, kiln_op op, const char *name,
                               kiln_value *const *inputs, int n_inputs,
                               const char *const *output_names, int n_outputs);
kiln_status kiln_graph_add_output(kiln_graph *g, kiln_value *v);
kiln_value *kiln_graph_find_value(const kiln_graph *g, const char *name);
kiln_node *kiln_graph_find_node(const kiln_graph *g, const char *name);

/* ---- fusion (graph.c) ---- */

const char *kiln_fusion_kind_name(kiln_fusion_kind k); /* "loop", "output", ... */
bool kiln_fusion_kind_parse(const char *s, kiln_fusion_kind *k);
/* The kind of a fusion node (its "kind" attribute); NONE for other nodes. */
kiln_fusion_kind kiln_node_fusion_kind(const kiln_node *n);
/* "Conv", or for a fusion node its kind and members in order,
 * "fusion:output(Conv+Add+Relu)" (truncated to size), for reports. */
void kiln_node_op_text(const kiln_node *n, char *buf, size_t size);
/* An empty sub-graph in g's arena, to become a fusion node's body. */
kiln_graph *kiln_graph_create_body(kiln_graph *g, const char *name);
/* Appends a fusion node of `kind` owning `body` (made by
 * kiln_graph_create_body(g), inputs and outputs already declared, shapes
 * inferred): n_inputs must equal body->n_inputs; the node's outputs get the
 * body outputs' types. */
kiln_node *kiln_graph_add_fusion(kiln_graph *g, kiln_fusion_kind kind, const char *name,
                                 kiln_graph *body, kiln_value *const *inputs, int n_inputs,
                                 const char *const *output_names);

/* ---- rewriting (graph.c) ---- */

/* Makes every use of `from` (node inputs, graph outputs) use `to`. */
void kiln_graph_replace_uses(kiln_graph *g, kiln_value *from, kiln_value *to);
/* Number of uses of v: node inputs plus graph outputs. */
int kiln_value_uses(const kiln_graph *g, const kiln_value *v);
/* Moves node n (in g) to index `at` of g->nodes, shifting those between. */
void kiln_graph_move_node(kiln_graph *g, kiln_node *n, int at);
/* Index of n in g->nodes, or -1. */
int kiln_graph_node_index(const kiln_graph *g, const kiln_node *n);
/* Drops values nothing refers to any more (constants no node or graph
 * output uses, outputs of removed nodes) and renumbers value ids densely. */
void kiln_graph_prune(kiln_graph *g);
/* A name not yet used by a value of g: base, else base.1, base.2, ... */
const char *kiln_graph_unique_value_name(kiln_graph *g, const char *base);
const char *kiln_graph_unique_node_name(kiln_graph *g, const char *base);
/* A deep copy of a fusion body, made a body of `parent` (in its arena). */
kiln_graph *kiln_graph_clone_body(kiln_graph *parent, const kiln_graph *body);
/* Adds to g a copy of node n (op, name, output names, attributes, origin
 * and body deep-copied into g's arena) reading `in` (g's values, one per
 * input of n, NULL where n's is omitted). NULL on OOM. */
kiln_node *kiln_graph_copy_node(kiln_graph *g, const kiln_node *n, kiln_value *const *in);
/* A graph of node n alone, for reproducers: its non-constant inputs become
 * graph inputs (same names and types), its constants are copied, its
 * outputs are the graph's; attributes, origin and body are copied. NULL on
 * OOM or if the result does not verify. */
kiln_graph *kiln_graph_of_node(const kiln_node *n, int opset);
/* A deep copy of g (constants' data, fusion bodies) in a new arena. */
kiln_graph *kiln_graph_clone(const kiln_graph *g, const kiln_allocator *a);

/* Removes nodes for which keep[node index] is false, preserving order. */
void kiln_graph_compact(kiln_graph *g, const bool *keep);
/* Turns a node output into a constant holding `data` (copied); the producer
 * must be removed by the caller if it has no other used outputs. */
kiln_status kiln_value_make_const(kiln_graph *g, kiln_value *v, const void *data);

/* Attributes. The setters copy into the arena and replace an existing one. */
kiln_status kiln_node_set_int(kiln_graph *g, kiln_node *n, const char *name, int64_t v);
kiln_status kiln_node_set_float(kiln_graph *g, kiln_node *n, const char *name, float v);
kiln_status kiln_node_set_string(kiln_graph *g, kiln_node *n, const char *name, const char *v);
kiln_status kiln_node_set_ints(kiln_graph *g, kiln_node *n, const char *name,
                               const int64_t *v, int count);
kiln_status kiln_node_set_floats(kiln_graph *g, kiln_node *n, const char *name,
                                 const float *v, int count);
kiln_status kiln_node_set_tensor(kiln_graph *g, kiln_node *n, const char *name,
                                 const kiln_tensor *t);

const kiln_attr *kiln_node_attr(const kiln_node *n, const char *name);
int64_t kiln_node_int(const kiln_node *n, const char *name, int64_t dflt);
float kiln_node_float(const kiln_node *n, const char *name, float dflt);
const char *kiln_node_string(const kiln_node *n, const char *name, const char *dflt);
/* Returns the count (0 if absent) and sets *v to the arena-owned array. */
int kiln_node_ints(const kiln_node *n, const char *name, const int64_t **v);
int kiln_node_floats(const kiln_node *n, const char *name, const float **v);
const kiln_tensor *kiln_node_tensor(const kiln_node *n, const char *name);

/* Input i, or NULL when omitted or out of range. */
static inline kiln_value *kiln_node_in(const kiln_node *n, int i)
{
	return i < n->n_inputs ? n->inputs[i] : NULL;
}

/* Reads element i of a constant of any integer or float dtype as int64 / double. */
int64_t kiln_const_get_i64(const kiln_value *v, int64_t i);
double kiln_const_get_f64(const kiln_value *v, int64_t i);

/* ---- shape.c ---------------------------------------------------------- */

/* A shape rule reads input types (and data of constant inputs) and attributes,
 * and sets every output's type. Errors name the node. */
typedef kiln_status (*kiln_shape_fn)(kiln_node *n, kiln_diag *d);
kiln_status kiln_infer_node(kiln_node *n, kiln_diag *d);
/* Runs kiln_infer_node over the graph in order. */
kiln_status kiln_infer_shapes(kiln_graph *g, kiln_diag *d);

/* NumPy broadcast of two shapes; false if incompatible. */
bool kiln_broadcast(const kiln_type *a, const kiln_type *b, kiln_type *out);

/* Window geometry of Conv / ConvTranspose / MaxPool / AveragePool, resolved
 * from attributes (auto_pad included) and input shapes. Shared by the shape
 * rules, the interpreter and the backends so they agree exactly. */
typedef struct kiln_window {
	int nspatial;                 /* spatial dims: rank - 2 */
	int64_t batch, in_c, out_c, group;
	int64_t in[KILN_MAX_RANK];    /* input spatial size */
	int64_t out[KILN_MAX_RANK];   /* output spatial size */
	int64_t kernel[KILN_MAX_RANK];
	int64_t stride[KILN_MAX_RANK];
	int64_t dilation[KILN_MAX_RANK];
	int64_t pad_begin[KILN_MAX_RANK];
	int64_t pad_end[KILN_MAX_RANK];
	int64_t out_pad[KILN_MAX_RANK]; /* ConvTranspose output_padding */
	bool ceil_mode;
	bool count_include_pad;
} kiln_window;

kiln_status kiln_window_resolve(const kiln_node *n, kiln_window *w, kiln_diag *d);

/* Conv / ConvTranspose geometry with the spatial dims right-aligned into
 * three (a missing leading dim has size 1, stride 1, no padding), so one
 * loop nest serves 1-D to 3-D: what the interpreter and the CPU kernels
 * iterate over. */
typedef struct kiln_conv_geom {
	int64_t n, c, m, group, cg, mg; /* batch, in/out channels, per group */
	int64_t in[3], out[3], k[3], s[3], dl[3], pb[3];
	int64_t is, os, ks; /* input / output / kernel spatial element counts */
} kiln_conv_geom;

/* Resolves n's window (1 to 3 spatial dims) for input x, weight w and output
 * y, checking that the groups divide the channels, that the element counts
 * agree with the window and (bias_numel >= 0) that the bias has m elements. */
kiln_status kiln_conv_geom_resolve(const kiln_node *n, const kiln_type *x, const kiln_type *w,
                                   const kiln_type *y, int64_t bias_numel, bool transpose,
                                   kiln_conv_geom *g, kiln_diag *d);

/* Normalises a possibly negative axis against rank; false if out of range. */
bool kiln_axis_norm(int64_t axis, int rank, int *out);

/* ---- movement.c ------------------------------------------------------- */

/* Index rules of data-movement ops, shared by the interpreter and the
 * backends so they agree exactly. */

/* One Slice axis of size dim (step != 0): negative start / end count from
 * the end, then clamp as ONNX does. Sets the first index read and the
 * number of elements. */
void kiln_slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step, int64_t *first,
                     int64_t *len);

typedef enum kiln_pad_mode {
	KILN_PAD_CONSTANT,
	KILN_PAD_REFLECT,
	KILN_PAD_EDGE,
	KILN_PAD_WRAP
} kiln_pad_mode;

/* Pad's mode attribute; false if unknown. */
bool kiln_pad_mode_parse(const char *s, kiln_pad_mode *mode);
/* Maps a coordinate c outside [0, len) (len > 0) into it, for the
 * non-constant modes. */
int64_t kiln_pad_map(kiln_pad_mode mode, int64_t c, int64_t len);

/* Resize (ONNX opset 19+, the reference implementation's arithmetic). */
typedef enum kiln_resize_mode {
	KILN_RESIZE_NEAREST,
	KILN_RESIZE_LINEAR,
	KILN_RESIZE_CUBIC
} kiln_resize_mode;

typedef struct kiln_resize_params {
	kiln_resize_mode mode;
	const char *coord;   /* coordinate_transformation_mode */
	const char *nearest; /* nearest_mode */
	double cubic_a;
	bool exclude_outside, antialias;
} kiln_resize_params;

/* Reads and checks the attributes (errors name n). */
kiln_status kiln_resize_params_read(const kiln_node *n, kiln_resize_params *p, kiln_diag *d);

/* The axes attribute (normalised, *na of them; all rank axes when absent),
 * and every axis's scale 1 and roi [0, 1] until the inputs say otherwise. */
kiln_status kiln_resize_axes(const kiln_node *n, int rank, int *axes, int *na, double *scale,
                             double *roi_lo, double *roi_hi, kiln_diag *d);
/* Scales of the na axes from the sizes input (sizes[i] for axes[i]) under
 * keep_aspect_ratio_policy. */
kiln_status kiln_resize_sizes(const kiln_node *n, const kiln_type *xt, const int *axes, int na,
                              const int64_t *sizes, double *scale, kiln_diag *d);

/* One axis, in_len -> out_len. */
typedef struct kiln_resize_axis {
	int64_t in_len, out_len;
	double scale, roi_start, roi_end;
	bool identity; /* an unchanged axis: one tap, weight 1 */
	int n;         /* taps per output index */
} kiln_resize_axis;

void kiln_resize_axis_init(const kiln_resize_params *p, kiln_resize_axis *ax, int64_t in_len,
                           int64_t out_len, double scale, double roi_start, double roi_end,
                           bool has_roi);
/* The ax->n taps of output index j: source indices (clamped to the input)
 * and weights. True when j lies outside the input (tf_crop_and_resize: the
 * output is extrapolation_value). */
bool kiln_resize_taps(const kiln_resize_params *p, const kiln_resize_axis *ax, int64_t j,
                      int64_t *idx, double *w);
/* An output value as stored to dt: integers round half to even and saturate
 * to i8/u8/i32; floats are unchanged. */
double kiln_resize_round(kiln_dtype dt, double v);

/* ---- cost.c ----------------------------------------------------------- */

/* FLOPs estimate of one node (0 for data movement); rules in cost.c. */
int64_t kiln_node_flops(const kiln_node *n);

/* ---- verify.c / text_print.c / text_parse.c: see kiln.h ---------------- */

#endif
