/* cmd_run.c — `kiln run`: runs a model with the reference interpreter on
 * inputs read from .npy files and writes each output to DIR/<name>.npy. */
#include "cli.h"
#include "interp.h"
#include "ir.h"
#include "npy.h"
#include "kiln_rt.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEFAULT_OUTPUT_DIR "kiln-out"
#define PRINT_ELEMENTS 8

static const char help[] =
	"usage: kiln run MODEL [FILE.npy ...] [--input NAME=FILE.npy ...]\n"
	"                [--output-dir DIR] [--shape NAME=DIMS ...] [--threads N] [--print]\n"
	"                [--check [-O0..3] [--rtol R] [--atol A] [--sum-tol S] [--dump DIR]]\n"
	"\n"
	"Runs MODEL and writes each output to DIR/<output name>.npy. MODEL is an\n"
	"ONNX file or textual IR (a name ending in .kir), run with kiln's reference\n"
	"interpreter, or a compiled model (.so from `kiln compile`), run with the\n"
	"runtime libkiln_rt.\n"
	"\n"
	"Inputs are .npy files, given by name with --input or positionally in the\n"
	"order of the model's inputs (both may be mixed: positional files fill the\n"
	"inputs not named). Each file must hold exactly the input's dtype and shape;\n"
	"a bf16 input takes an f32 file (NumPy has no bf16). Output names are\n"
	"sanitised for the file system: every character outside [A-Za-z0-9._-]\n"
	"becomes '_' (two outputs that would collide get '_<index>' appended). bf16\n"
	"outputs are written as f32. Each file is written to a temporary name and\n"
	"renamed, so no half-written file is left behind.\n"
	"\n"
	"flags:\n"
	"  --input NAME=FILE    the .npy file for input NAME; repeatable\n"
	"  --output-dir DIR     where to write outputs (default ./" DEFAULT_OUTPUT_DIR
	", created\n"
	"                       if missing)\n"
	"  --shape NAME=DIMS    pin the shape of ONNX input NAME, dims joined by 'x'\n"
	"                       (e.g. --shape input=1x3x224x224); repeatable\n"
	"  --threads N          threads for a compiled model (default $KILN_NUM_THREADS,\n"
	"                       else all cores)\n"
	"  --print              print each output's type, first elements, min/max/mean\n"
	"  --check              numerics bisector (ONNX or .kir models): compile the\n"
	"                       model (-O level, default -O2), run its kernels and the\n"
	"                       interpreter side by side on the inputs, and report the\n"
	"                       first kernel (fusion node, its member ops and ONNX\n"
	"                       nodes) whose output leaves tolerance; exit 1 if one does\n"
	"  --rtol R, --atol A   --check's tolerance: |got - ref| <= A + R*|ref|\n"
	"                       (default 1e-4 and 1e-5; f16/bf16 at least rtol 1e-2)\n"
	"  --sum-tol S          --check's allowance for rounding in long sums, added to\n"
	"                       the tolerance: S * sqrt(depth) * unit roundoff * RMS of\n"
	"                       the output, depth = the kernel's multiply-adds per\n"
	"                       output element (default 4; 0 turns it off)\n"
	"  --dump DIR           with --check: write the failing kernel's inputs as .npy\n"
	"                       and the node as DIR/repro.kir, a minimal reproducer\n"
	"  -h, --help           print this help\n"
	"\n"
	"examples:\n"
	"  kiln run examples/mlp.onnx examples/mlp_input.npy --print\n"
	"  kiln run mlp.so examples/mlp_input.npy --threads 2\n"
	"  kiln run model.onnx --input input_ids=ids.npy --input mask=mask.npy \\\n"
	"           --output-dir out\n"
	"  kiln run model.onnx input.npy --check --dump repro\n"
	"\n"
	"Exit status: 0 success; 1 a model, input or output file error or a failed\n"
	"run (the message names the file); 2 usage error (bad flag, unknown, missing\n"
	"or extra inputs).\n";

typedef struct run_args {
	const char *model;
	const char *output_dir;
	bool print;
	kiln_cli_pins pins;
	const char **named_names; /* --input NAME=FILE, split */
	const char **named_files;
	int n_named;
	const char **files; /* positional .npy files */
	int n_files;
	int threads; /* 0: the runtime's default */
	bool check;
	int opt_level;
	double rtol, atol, sum_tol;
	const char *dump_dir;
	bool check_flags; /* a --check-only flag was given */
} run_args;

static void run_args_free(run_args *a)
{
	for (int i = 0; i < a->n_named; i++)
		free((char *)a->named_names[i]);
	free(a->named_names);
	free(a->named_files);
	free(a->files);
	kiln_cli_pins_free(&a->pins);
}

static int parse_args(int argc, char **argv, run_args *a)
{
	a->output_dir = DEFAULT_OUTPUT_DIR;
	int rc_shape = KILN_EXIT_OK;
	a->opt_level = 2;
	a->rtol = 1e-4;
	a->atol = 1e-5;
	a->sum_tol = 4;
	/* Each argument is at most one file: argc bounds every list. */
	a->named_names = calloc((size_t)argc + 1, sizeof *a->named_names);
	a->named_files = calloc((size_t)argc + 1, sizeof *a->named_files);
	a->files = calloc((size_t)argc + 1, sizeof *a->files);
	if (!a->named_names || !a->named_files || !a->files) {
		fprintf(stderr, "kiln: out of memory\n");
		return KILN_EXIT_ERROR;
	}
	bool only_positional = false;
	for (int i = 0; i < argc;) {
		const char *arg = argv[i], *value;
		if (only_positional || arg[0] != '-' || !arg[1]) {
			if (!a->model)
				a->model = arg;
			else
				a->files[a->n_files++] = arg;
			i++;
		} else if (!strcmp(arg, "--")) {
			only_positional = true;
			i++;
		} else if (kiln_cli_is_help(arg)) {
			fputs(help, stdout);
			return -1;
		} else if (!strcmp(arg, "--print")) {
			a->print = true;
			i++;
		} else if (!strcmp(arg, "--check")) {
			a->check = true;
			i++;
		} else if (arg[1] == 'O' && arg[2] >= '0' && arg[2] <= '3' && !arg[3]) {
			a->opt_level = arg[2] - '0';
			a->check_flags = true;
			i++;
		} else if (kiln_cli_flag(argv, argc, &i, "--rtol", &value) ||
		           kiln_cli_flag(argv, argc, &i, "--atol", &value) ||
		           kiln_cli_flag(argv, argc, &i, "--sum-tol", &value)) {
			const char *flag = !strncmp(arg, "--rtol", 6)   ? "--rtol"
			                   : !strncmp(arg, "--atol", 6) ? "--atol"
			                                                : "--sum-tol";
			char *end;
			double t = value ? strtod(value, &end) : -1;
			if (!value || !*value || *end || !(t >= 0 && t < 1e30))
				return kiln_cli_usage("run", "%s needs a number >= 0, got '%s'", flag,
				                      value ? value : "");
			*(flag[2] == 'r' ? &a->rtol : flag[2] == 'a' ? &a->atol : &a->sum_tol) = t;
			a->check_flags = true;
		} else if (kiln_cli_flag(argv, argc, &i, "--dump", &value)) {
			if (!value || !*value)
				return kiln_cli_usage("run", "--dump needs a directory");
			a->dump_dir = value;
			a->check_flags = true;
		} else if (kiln_cli_flag(argv, argc, &i, "--output-dir", &value)) {
			if (!value || !*value)
				return kiln_cli_usage("run", "--output-dir needs a directory");
			a->output_dir = value;
		} else if (kiln_cli_flag(argv, argc, &i, "--threads", &value)) {
			char *end;
			long t = value ? strtol(value, &end, 10) : 0;
			if (!value || !*value || *end || t < 1 || t > 1024)
				return kiln_cli_usage("run", "--threads needs a count from 1 to 1024, got '%s'",
				                      value ? value : "");
			a->threads = (int)t;
		} else if (kiln_cli_shape_flag("run", argv, argc, &i, &a->pins, &rc_shape)) {
			if (rc_shape)
				return rc_shape;
		} else if (kiln_cli_flag(argv, argc, &i, "--input", &value)) {
			const char *eq = value ? strchr(value, '=') : NULL;
			if (!eq || eq == value || !eq[1])
				return kiln_cli_usage("run", "--input '%s': expected NAME=FILE.npy",
				                      value ? value : "");
			char *name = malloc((size_t)(eq - value) + 1);
			if (!name) {
				fprintf(stderr, "kiln: out of memory\n");
				return KILN_EXIT_ERROR;
			}
			memcpy(name, value, (size_t)(eq - value));
			name[eq - value] = '\0';
			a->named_names[a->n_named] = name;
			a->named_files[a->n_named++] = eq + 1;
		} else {
			return kiln_cli_usage("run", "unknown flag '%s'", arg);
		}
	}
	if (!a->model)
		return kiln_cli_usage("run", "no model given");
	if (a->check_flags && !a->check)
		return kiln_cli_usage("run", "-O, --rtol, --atol, --sum-tol and --dump apply to --check only");
	return KILN_EXIT_OK;
}

/* Decides which file feeds each graph input: named first, then positional in
 * the order of the inputs left. files[i] is for g->inputs[i]. */
static int assign_inputs(const run_args *a, const kiln_graph *g, const char **files)
{
	char names[512];
	kiln_cli_input_list(g, names, sizeof names);
	for (int k = 0; k < a->n_named; k++) {
		int i = 0;
		while (i < g->n_inputs && strcmp(g->inputs[i]->name, a->named_names[k]))
			i++;
		if (i == g->n_inputs)
			return kiln_cli_usage("run", "--input %s=%s: %s has no input '%s' "
			                      "(its inputs: %s)", a->named_names[k],
			                      a->named_files[k], a->model, a->named_names[k], names);
		if (files[i])
			return kiln_cli_usage("run", "input '%s' is given twice ('%s' and '%s')",
			                      a->named_names[k], files[i], a->named_files[k]);
		files[i] = a->named_files[k];
	}
	int next = 0;
	for (int k = 0; k < a->n_files; k++) {
		while (next < g->n_inputs && files[next])
			next++;
		if (next == g->n_inputs)
			return kiln_cli_usage("run", "too many inputs: '%s' has no input left to "
			                      "feed (%s takes %d: %s)", a->files[k], a->model,
			                      g->n_inputs, names);
		files[next] = a->files[k];
	}
	char missing[512];
	size_t len = 0;
	int n_missing = 0;
	missing[0] = '\0';
	for (int i = 0; i < g->n_inputs; i++) {
		if (files[i] || len >= sizeof missing)
			continue;
		char ty[160];
		kiln_type_str(&g->inputs[i]->type, ty, sizeof ty);
		len += (size_t)snprintf(missing + len, sizeof missing - len, "%s'%s' (%s)",
		                        n_missing ? ", " : "", g->inputs[i]->name, ty);
		n_missing++;
	}
	if (n_missing)
		return kiln_cli_usage("run", "missing input%s %s: pass %s as --input NAME=FILE.npy "
		                      "or positionally in input order", n_missing > 1 ? "s" : "",
		                      missing, n_missing > 1 ? "each" : "it");
	return KILN_EXIT_OK;
}

/* Reads the file for graph input v, checking (or, for bf16, converting) its
 * dtype and shape. */
static int read_input(const char *path, const kiln_value *v, kiln_tensor *t)
{
	kiln_diag d;
	kiln_diag_init(&d, path);
	if (kiln_npy_read(path, t, &d) != KILN_OK)
		return KILN_EXIT_ERROR;
	kiln_type want = v->type;
	if (want.dtype == KILN_DT_BF16 && t->type.dtype == KILN_DT_F32) {
		want.dtype = KILN_DT_F32;
		if (kiln_type_equal(&want, &t->type)) {
			int64_t n = kiln_type_numel(&t->type);
			uint16_t *h = malloc(n ? (size_t)n * sizeof *h : 1);
			if (!h) {
				fprintf(stderr, "%s: out of memory\n", path);
				free(t->data);
				t->data = NULL;
				return KILN_EXIT_ERROR;
			}
			const float *f = t->data;
			for (int64_t i = 0; i < n; i++)
				h[i] = kiln_f32_to_bf16(f[i]);
			free(t->data);
			t->data = h;
			t->type.dtype = KILN_DT_BF16;
			return KILN_EXIT_OK;
		}
		want.dtype = KILN_DT_BF16;
	}
	if (kiln_type_equal(&want, &t->type))
		return KILN_EXIT_OK;
	char a[160], b[160];
	const char *hint = "";
	want.dtype = t->type.dtype;
	if (v->type.dtype == KILN_DT_BF16)
		hint = " (a bf16 input reads an f32 file: NumPy has no bf16)";
	else if (kiln_type_equal(&want, &t->type) && kiln_dtype_is_float(v->type.dtype) &&
	         kiln_dtype_is_float(t->type.dtype))
		hint = " (convert it with numpy's astype)";
	fprintf(stderr, "%s: input '%s' expects %s, the file holds %s%s\n", path, v->name,
	        kiln_type_str(&v->type, a, sizeof a), kiln_type_str(&t->type, b, sizeof b),
	        hint);
	free(t->data);
	t->data = NULL;
	return KILN_EXIT_ERROR;
}

/* mkdir -p. */
static int make_dirs(const char *dir)
{
	char *p = malloc(strlen(dir) + 1);
	if (!p) {
		fprintf(stderr, "kiln: out of memory\n");
		return KILN_EXIT_ERROR;
	}
	strcpy(p, dir);
	int rc = KILN_EXIT_OK;
	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = '\0';
		struct stat st;
		if (mkdir(p, 0777) != 0 && errno != EEXIST) {
			fprintf(stderr, "%s: cannot create directory: %s\n", p, strerror(errno));
			rc = KILN_EXIT_ERROR;
			break;
		}
		if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "%s: cannot create directory: %s\n", p, strerror(ENOTDIR));
			rc = KILN_EXIT_ERROR;
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

/* Output name -> file name: characters outside [A-Za-z0-9._-] become '_'. */
static char *sanitise(const char *name, int index, bool suffix)
{
	size_t n = strlen(name);
	char *s = malloc(n + 16);
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		s[i] = ok ? c : '_';
	}
	s[n] = '\0';
	if (suffix)
		snprintf(s + n, 16, "_%d", index);
	return s;
}

static void print_output(const char *name, const kiln_tensor *t)
{
	char ty[160];
	int64_t n = kiln_tensor_numel(t);
	bool is_float = kiln_dtype_is_float(t->type.dtype);
	printf("%s: %s\n", name, kiln_type_str(&t->type, ty, sizeof ty));
	if (!n) {
		printf("  (no elements)\n");
		return;
	}
	printf("  [");
	for (int64_t i = 0; i < n && i < PRINT_ELEMENTS; i++) {
		if (is_float)
			printf(i ? ", %.6g" : "%.6g", kiln_tensor_get_f64(t, i));
		else
			printf(i ? ", %lld" : "%lld", (long long)kiln_tensor_get_i64(t, i));
	}
	printf(n > PRINT_ELEMENTS ? ", ...]  (first %d of %lld)\n" : "]\n", PRINT_ELEMENTS,
	       (long long)n);
	double lo = INFINITY, hi = -INFINITY, sum = 0;
	int64_t nans = 0;
	for (int64_t i = 0; i < n; i++) {
		double v = kiln_tensor_get_f64(t, i);
		if (isnan(v)) {
			nans++;
			continue;
		}
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
		sum += v;
	}
	if (nans == n) {
		printf("  all %lld elements are NaN\n", (long long)n);
		return;
	}
	printf("  min %.6g  max %.6g  mean %.6g", lo, hi, sum / (double)(n - nans));
	if (nans)
		printf("  (%lld NaN not counted)", (long long)nans);
	printf("\n");
}

/* Writes every output (out_names[i], outs[i]) as DIR/<sanitised name>.npy. */
static int write_outputs(const run_args *a, int n, const char *const *out_names,
                         const kiln_tensor *outs)
{
	char **names = calloc((size_t)n + 1, sizeof *names);
	if (!names) {
		fprintf(stderr, "kiln: out of memory\n");
		return KILN_EXIT_ERROR;
	}
	int rc = make_dirs(a->output_dir);
	for (int i = 0; i < n && rc == KILN_EXIT_OK; i++) {
		const char *name = out_names[i];
		names[i] = sanitise(name, i, false);
		for (int k = 0; names[i] && k < i; k++) {
			if (!strcmp(names[i], names[k])) {
				free(names[i]);
				names[i] = sanitise(name, i, true);
				break;
			}
		}
		char *path = names[i] ? malloc(strlen(a->output_dir) + strlen(names[i]) + 8) : NULL;
		if (!path) {
			fprintf(stderr, "kiln: out of memory\n");
			rc = KILN_EXIT_ERROR;
			break;
		}
		sprintf(path, "%s/%s.npy", a->output_dir, names[i]);
		const kiln_tensor *t = &outs[i];
		kiln_diag d;
		kiln_diag_init(&d, path);
		if (kiln_npy_write(path, t, &d) != KILN_OK) {
			rc = KILN_EXIT_ERROR;
		} else if (a->print) {
			print_output(name, t);
			printf("  -> %s\n", path);
		} else {
			char ty[160];
			printf("%s: %s -> %s\n", name, kiln_type_str(&t->type, ty, sizeof ty), path);
		}
		free(path);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

/* True if path is an ELF file (a compiled model) rather than ONNX or IR. */
static bool is_artefact(const char *path)
{
	unsigned char magic[4] = {0};
	FILE *f = fopen(path, "rb");
	if (!f)
		return false;
	size_t n = fread(magic, 1, 4, f);
	fclose(f);
	return n == 4 && !memcmp(magic, "\x7f" "ELF", 4);
}

/* kiln run model.so: the runtime runs it; inputs are matched and read as
 * for a graph, through a graph holding just the artefact's inputs. */
static int run_artefact(run_args *a)
{
	if (a->pins.n)
		return kiln_cli_usage("run", "--shape does not apply to a compiled model: its "
		                      "shapes were fixed by `kiln compile`");
	char err[1024];
	kiln_rt_model_t *m = NULL;
	if (kiln_rt_model_load(a->model, &m, err, sizeof err) != KILN_RT_OK) {
		fprintf(stderr, "%s\n", err);
		return KILN_EXIT_ERROR;
	}
	int n_in = kiln_rt_model_n_inputs(m), n_out = kiln_rt_model_n_outputs(m);
	kiln_graph *g = kiln_graph_create(kiln_rt_model_name(m), NULL);
	const char **files = calloc((size_t)n_in + 1, sizeof *files);
	kiln_tensor *inputs = calloc((size_t)n_in + 1, sizeof *inputs);
	kiln_rt_tensor *rin = calloc((size_t)n_in + 1, sizeof *rin);
	kiln_rt_tensor *rout = calloc((size_t)n_out + 1, sizeof *rout);
	kiln_tensor *outs = calloc((size_t)n_out + 1, sizeof *outs);
	const char **names = calloc((size_t)n_out + 1, sizeof *names);
	int rc = KILN_EXIT_OK;
	if (!g || !files || !inputs || !rin || !rout || !outs || !names) {
		fprintf(stderr, "kiln: out of memory\n");
		rc = KILN_EXIT_ERROR;
	}
	for (int i = 0; rc == KILN_EXIT_OK && i < n_in; i++) {
		const kiln_abi_tensor *t = kiln_rt_model_input(m, i);
		kiln_type ty = {.dtype = (kiln_dtype)t->dtype, .rank = t->rank};
		memcpy(ty.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
		if (!kiln_graph_add_input(g, t->name, &ty)) {
			fprintf(stderr, "kiln: out of memory\n");
			rc = KILN_EXIT_ERROR;
		}
	}
	if (rc == KILN_EXIT_OK)
		rc = assign_inputs(a, g, files);
	for (int i = 0; i < n_in && rc == KILN_EXIT_OK; i++) {
		rc = read_input(files[i], g->inputs[i], &inputs[i]);
		if (rc == KILN_EXIT_OK) {
			rin[i].dtype = (int32_t)inputs[i].type.dtype;
			rin[i].rank = inputs[i].type.rank;
			memcpy(rin[i].dims, inputs[i].type.dims, sizeof rin[i].dims);
			rin[i].data = inputs[i].data;
		}
	}
	for (int i = 0; i < n_out && rc == KILN_EXIT_OK; i++) {
		const kiln_abi_tensor *t = kiln_rt_model_output(m, i);
		names[i] = t->name;
		outs[i].type = (kiln_type){.dtype = (kiln_dtype)t->dtype, .rank = t->rank};
		memcpy(outs[i].type.dims, t->dims, sizeof(int64_t) * (size_t)t->rank);
		outs[i].data = malloc(t->bytes ? (size_t)t->bytes : 1);
		rout[i] = (kiln_rt_tensor){.dtype = t->dtype, .rank = t->rank, .data = outs[i].data};
		memcpy(rout[i].dims, t->dims, sizeof rout[i].dims);
		if (!outs[i].data) {
			fprintf(stderr, "kiln: out of memory\n");
			rc = KILN_EXIT_ERROR;
		}
	}
	kiln_rt_session_t *s = NULL;
	if (rc == KILN_EXIT_OK) {
		kiln_rt_session_opts o = {.n_threads = a->threads};
		kiln_rt_status st = kiln_rt_session_create(m, &o, &s);
		if (st != KILN_RT_OK) {
			fprintf(stderr, "%s: cannot create a session: %s\n", a->model, kiln_rt_status_str(st));
			rc = KILN_EXIT_ERROR;
		} else if (kiln_rt_session_run(s, rin, n_in, rout, n_out) != KILN_RT_OK) {
			fprintf(stderr, "%s: %s\n", a->model, kiln_rt_session_error(s));
			rc = KILN_EXIT_ERROR;
		}
	}
	if (rc == KILN_EXIT_OK)
		rc = write_outputs(a, n_out, names, outs);
	if (s)
		kiln_rt_session_free(s);
	for (int i = 0; i < n_in && inputs; i++)
		free(inputs[i].data);
	for (int i = 0; i < n_out && outs; i++)
		free(outs[i].data);
	free(files);
	free(inputs);
	free(rin);
	free(rout);
	free(outs);
	free(names);
	if (g)
		kiln_graph_destroy(g);
	kiln_rt_model_free(m);
	return rc;
}

static int run_main(int argc, char **argv)
{
	run_args a = {0};
	int rc = parse_args(argc, argv, &a);
	if (rc != KILN_EXIT_OK) {
		run_args_free(&a);
		return rc < 0 ? KILN_EXIT_OK : rc;
	}
	if (is_artefact(a.model) && a.check) {
		run_args_free(&a);
		return kiln_cli_usage("run", "--check needs the model (.onnx or .kir), not a compiled .so: "
		                      "it compiles the model itself");
	}
	if (is_artefact(a.model)) {
		rc = run_artefact(&a);
		run_args_free(&a);
		return rc;
	}
	if (a.threads && !a.check) {
		run_args_free(&a);
		return kiln_cli_usage("run", "--threads applies to compiled models (.so) and --check only");
	}
	kiln_graph *g = NULL;
	rc = kiln_cli_load("run", a.model, &a.pins, &g);
	if (rc != KILN_EXIT_OK) {
		run_args_free(&a);
		return rc;
	}
	const char **files = calloc((size_t)g->n_inputs + 1, sizeof *files);
	kiln_tensor *inputs = calloc((size_t)g->n_inputs + 1, sizeof *inputs);
	if (!files || !inputs) {
		fprintf(stderr, "kiln: out of memory\n");
		rc = KILN_EXIT_ERROR;
	}
	if (rc == KILN_EXIT_OK)
		rc = assign_inputs(&a, g, files);
	for (int i = 0; i < g->n_inputs && rc == KILN_EXIT_OK; i++)
		rc = read_input(files[i], g->inputs[i], &inputs[i]);

	kiln_interp *it = NULL;
	if (rc == KILN_EXIT_OK && a.check) {
		kiln_cli_check_opts co = {.model = a.model, .opt_level = a.opt_level,
		                          .threads = a.threads, .rtol = a.rtol, .atol = a.atol,
		                          .sum_tol = a.sum_tol, .dump_dir = a.dump_dir};
		rc = kiln_cli_check(&co, g, inputs);
		a.check = false; /* the outputs are not written */
		goto done;
	}
	if (rc == KILN_EXIT_OK) {
		kiln_diag d;
		kiln_diag_init(&d, a.model);
		if (kiln_interp_create(g, &it, &d) != KILN_OK ||
		    kiln_interp_run(it, inputs, g->n_inputs, &d) != KILN_OK)
			rc = KILN_EXIT_ERROR;
	}
	if (rc == KILN_EXIT_OK) {
		int n = kiln_interp_n_outputs(it);
		const char **names = calloc((size_t)n + 1, sizeof *names);
		kiln_tensor *outs = calloc((size_t)n + 1, sizeof *outs);
		if (!names || !outs) {
			fprintf(stderr, "kiln: out of memory\n");
			rc = KILN_EXIT_ERROR;
		}
		for (int i = 0; rc == KILN_EXIT_OK && i < n; i++) {
			names[i] = g->outputs[i]->name;
			outs[i] = *kiln_interp_output(it, i);
		}
		if (rc == KILN_EXIT_OK)
			rc = write_outputs(&a, n, names, outs);
		free(names);
		free(outs);
	}

done:
	if (it)
		kiln_interp_destroy(it);
	for (int i = 0; inputs && i < g->n_inputs; i++)
		free(inputs[i].data);
	free(inputs);
	free(files);
	kiln_graph_destroy(g);
	run_args_free(&a);
	return rc;
}

const kiln_command kiln_cmd_run = {
	.name = "run",
	.summary = "run a model (interpreter, or a compiled .so) on .npy inputs",
	.help = help,
	.run = run_main,
};
