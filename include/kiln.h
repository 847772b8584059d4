/* kiln.h — the kiln compiler library's public API.
 *
 * Consumes: a model file (ONNX) or textual IR (.kir).
 * Produces: a verified tensor-IR graph, which the reference interpreter runs
 * (and, later, the passes optimise and the backends compile).
 *
 * Everything here returns a kiln_status; nothing aborts on user input.
 * Diagnostics go to a kiln_diag sink (stderr by default). */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_VERSION "0.1.0"

/* Append only: never reorder (values are part of tests and artefacts). */
typedef enum kiln_status {
	KILN_OK = 0,
	KILN_ERR_INVALID_MODEL, /* malformed or truncated input file */
	KILN_ERR_UNSUPPORTED,   /* valid input kiln cannot handle (op, dtype, attr) */
	KILN_ERR_SHAPE,         /* shape or dtype mismatch */
	KILN_ERR_OOM,           /* allocation failed */
	KILN_ERR_IO,            /* file could not be read or written */
	KILN_ERR_INVALID_ARG,   /* bad argument from the caller (flag, option) */
	KILN_ERR_PARSE,         /* textual IR or other text could not be parsed */
	KILN_ERR_VERIFY,        /* graph breaks an IR invariant */
	KILN_ERR_INTERNAL,      /* a bug in kiln */
	KILN_STATUS_COUNT
} kiln_status;

const char *kiln_status_str(kiln_status s);

/* Append only. */
typedef enum kiln_dtype {
	KILN_DT_F32 = 0,
	KILN_DT_F16,
	KILN_DT_BF16,
	KILN_DT_F64,
	KILN_DT_I64,
	KILN_DT_I32,
	KILN_DT_I8,
	KILN_DT_U8,
	KILN_DT_BOOL, /* one byte per element, 0 or 1 */
	KILN_DTYPE_COUNT
} kiln_dtype;

const char *kiln_dtype_name(kiln_dtype dt); /* "f32", "i64", ... */
size_t kiln_dtype_size(kiln_dtype dt);      /* bytes per element */
bool kiln_dtype_is_float(kiln_dtype dt);    /* f32 f16 bf16 f64 */
bool kiln_dtype_is_int(kiln_dtype dt);      /* i64 i32 i8 u8 */
/* Parses "f32", "i64", ...; returns false if unknown. */
bool kiln_dtype_parse(const char *s, kiln_dtype *out);

float kiln_f16_to_f32(uint16_t h);
uint16_t kiln_f32_to_f16(float f);   /* round to nearest even */
float kiln_bf16_to_f32(uint16_t h);
uint16_t kiln_f32_to_bf16(float f);  /* round to nearest even */

#define KILN_MAX_RANK 8

/* A tensor type: dtype and static shape. rank 0 is a scalar. */
typedef struct kiln_type {
	kiln_dtype dtype;
	int rank;
	int64_t dims[KILN_MAX_RANK];
} kiln_type;

int64_t kiln_type_numel(const kiln_type *t);
size_t kiln_type_bytes(const kiln_type *t);
bool kiln_type_equal(const kiln_type *a, const kiln_type *b);
/* Writes "f32[1,3,224,224]" (or "f32[]" for a scalar) into buf; returns buf. */
char *kiln_type_str(const kiln_type *t, char *buf, size_t size);

/* A tensor: a type and a pointer to its elements, dense, C order.
 * Whoever fills in `data` owns it; a kiln_tensor never frees. */
typedef struct kiln_tensor {
	kiln_type type;
	void *data;
} kiln_tensor;

/* ---- Diagnostics ---------------------------------------------------- */

typedef void (*kiln_diag_fn)(void *user, const char *msg);

/* A diagnostics sink. `file` prefixes every message; `fn` NULL means stderr.
 * The last message is kept in `last` so tests can check it. */
typedef struct kiln_diag {
	kiln_diag_fn fn;
	void *user;
	const char *file;
	int n_errors;
	char last[1024];
} kiln_diag;

void kiln_diag_init(kiln_diag *d, const char *file);

/* ---- Graphs ---------------------------------------------------------- */

typedef struct kiln_graph kiln_graph; /* defined in ir/ir.h */

void kiln_graph_destroy(kiln_graph *g);
kiln_status kiln_graph_verify(const kiln_graph *g, kiln_diag *d);

/* Textual IR. Constants larger than a few elements print as an elided
 * summary unless `full_constants`; both forms parse back and print the same. */
typedef struct kiln_print_opts {
	bool full_constants;
} kiln_print_opts;

/* Returns a malloc'd NUL-terminated string (caller frees), or NULL on OOM. */
char *kiln_graph_print(const kiln_graph *g, const kiln_print_opts *opts);
kiln_status kiln_graph_parse(const char *text, const char *filename,
                             kiln_graph **out, kiln_diag *d);

/* ---- Graph passes (passes/) -------------------------------------------- */

/* Rewrites g in place through a pipeline of graph passes. The -O level picks
 * the pipeline (kiln_pipeline) unless `passes` names one; a pass that fails
 * leaves g unusable (destroy it). */
typedef struct kiln_opt_opts {
	int opt_level;           /* 0..3: the pipeline when passes is NULL */
	const char *passes;      /* comma-separated pass names, run in order */
	const char *disable;     /* comma-separated pass names to skip */
	const char *print_after; /* a pass name, or "all": call print after it */
	bool verify_each;        /* run the verifier after every pass */
	void (*print)(void *user, const char *pass, const kiln_graph *g);
	void *print_user;
} kiln_opt_opts;

kiln_status kiln_optimize(kiln_graph *g, const kiln_opt_opts *opts, kiln_diag *d);
/* Checks the level and every pass name in opts (KILN_ERR_INVALID_ARG naming
 * the first unknown one) without running anything. */
kiln_status kiln_opt_check(const kiln_opt_opts *opts, kiln_diag *d);
/* The pass catalogue, for help texts: name and one-line description of
 * pass i (NULL past the end), and the pipeline of an -O level. */
const char *kiln_pass_name(int i);
const char *kiln_pass_desc(int i);
const char *kiln_pipeline(int opt_level);

/* ---- ONNX import ----------------------------------------------------- */

/* Pins the shape of a graph input with symbolic or unknown dims. */
typedef struct kiln_shape_pin {
	const char *name;
	int rank;
	int64_t dims[KILN_MAX_RANK];
} kiln_shape_pin;

/* Binds a graph input to a compile-time constant (the input disappears). */
typedef struct kiln_input_binding {
	const char *name;
	kiln_tensor value; /* copied into the graph */
} kiln_input_binding;

/* Evaluates `node`, whose inputs are all constants, writing each output i into
 * out_data[i] (already allocated for the output's inferred type). The importer
 * uses it to fold shape computations (Shape -> Gather -> Concat -> Reshape);
 * kiln_import_onnx() wires in the reference interpreter. */
struct kiln_node;
typedef kiln_status (*kiln_fold_fn)(void *user, const struct kiln_node *node,
                                    void **out_data, kiln_diag *d);

typedef struct kiln_import_opts {
	const kiln_shape_pin *pins;
	int n_pins;
	const kiln_input_binding *bindings;
	int n_bindings;
	kiln_fold_fn fold; /* NULL: no folding (shape-determining inputs must be constants) */
	void *fold_user;
} kiln_import_opts;

/* The frontend proper: no folding unless opts->fold is set. */
kiln_status kiln_onnx_import(const char *path, const kiln_import_opts *opts,
                             kiln_graph **out, kiln_diag *d);
/* Same, with the interpreter as the folder (what the CLI uses). */
kiln_status kiln_import_onnx(const char *path, const kiln_import_opts *opts,
                             kiln_graph **out, kiln_diag *d);
/* Decodes a serialized onnx.TensorProto file (test_data_set_N/input_0.pb).
 * data is malloc'd (caller frees t->data); name (may be NULL) gets a copy of
 * the tensor's name, malloc'd. */
kiln_status kiln_onnx_read_tensor(const char *path, kiln_tensor *t, char **name,
                                  kiln_diag *d);

/* ---- Reference interpreter ------------------------------------------ */

typedef struct kiln_interp kiln_interp;

kiln_status kiln_interp_create(const kiln_graph *g, kiln_interp **out, kiln_diag *d);
/* inputs[i] is for graph input i; dtype and shape are checked. */
kiln_status kiln_interp_run(kiln_interp *it, const kiln_tensor *inputs, int n_inputs,
                            kiln_diag *d);
int kiln_interp_n_outputs(const kiln_interp *it);
/* Valid until the next run or destroy. */
const kiln_tensor *kiln_interp_output(const kiln_interp *it, int i);
void kiln_interp_destroy(kiln_interp *it);

/* ---- Compiling to native code (codegen/cpu) ---------------------------- */

/* Append only. */
typedef enum kiln_emit {
	KILN_EMIT_SO = 0, /* shared object exporting kiln_model (docs/abi.md) */
	KILN_EMIT_OBJ,    /* relocatable object, the same code */
	KILN_EMIT_ASM,    /* target assembly, for reading */
	KILN_EMIT_LLVM,   /* textual LLVM IR after optimisation, for reading */
	KILN_EMIT_HEADER, /* typed C header: sizes as macros, a run wrapper */
	KILN_EMIT_COUNT
} kiln_emit;

typedef struct kiln_compile_opts {
	const char *triple; /* NULL: the host's */
	const char *cpu;    /* NULL or "native": the host CPU; "generic",
	                     * "x86-64-v3", "x86-64-v4", or any LLVM CPU name */
	int opt_level;      /* 0..3; 0 runs one kernel per op with light LLVM opts */
	const char *name;   /* C identifier used in the header; NULL: from the graph */
	/* Progress of long stages (may be NULL): stage name, done of total. */
	void (*progress)(void *user, const char *stage, int done, int total);
	void *progress_user;
	/* Graph passes: NULL runs the -O level's pipeline (kiln_optimize). */
	const char *passes;
	const char *disable_passes;
	/* f32 Gemm, MatMul and (not depthwise) Conv nodes call the runner's GEMM
	 * (kiln_abi_host.sgemm) on plain operands, Conv through an im2col, the
	 * way a typical framework runs; the artefact then needs one
	 * (KILN_ABI_FLAG_HOST_SGEMM). Fused products keep kiln's own GEMM. */
	bool host_gemm;
} kiln_compile_opts;

typedef struct kiln_compile_stats {
	int n_kernels;
	int64_t arena_bytes;          /* the planned arena */
	int64_t intermediate_bytes;   /* sum of all intermediate tensors */
	int64_t thread_scratch_bytes; /* per thread */
	int64_t weight_bytes;         /* read-only data */
	double seconds_lower;         /* graph -> LLVM module */
	double seconds_optimize;      /* LLVM pass pipeline */
	double seconds_codegen;       /* machine code, on first emit */
} kiln_compile_stats;

typedef struct kiln_compiled kiln_compiled;

/* Lowers a verified, statically shaped graph to an optimised LLVM module for
 * the target. Fails with KILN_ERR_UNSUPPORTED naming the node when an op or
 * dtype has no CPU kernel. The graph may be destroyed afterwards. */
kiln_status kiln_compile(const kiln_graph *g, const kiln_compile_opts *opts,
                         kiln_compiled **out, kiln_diag *d);
/* Writes one form to path through a temporary file renamed on success: no
 * half-written output. Linking a .so runs the system C compiler driver
 * (cc, or <triple>-gcc when cross-compiling). */
kiln_status kiln_compiled_emit(kiln_compiled *c, kiln_emit what, const char *path,
                               kiln_diag *d);
const kiln_compile_stats *kiln_compiled_stats(const kiln_compiled *c);
void kiln_compiled_destroy(kiln_compiled *c);

#ifdef __cplusplus
}
#endif
#endif
