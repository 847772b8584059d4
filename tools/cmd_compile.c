/* cmd_compile.c — `kiln compile`: a model to native code (a shared object
 * and its C header by default), through the CPU backend. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
	"usage: kiln compile MODEL -o OUT [--emit KIND[,KIND...]] [-O0|-O1|-O2|-O3]\n"
	"                    [--target TRIPLE] [--cpu CPU] [--name IDENT] [--shape NAME=DIMS ...]\n"
	"                    [--passes=a,b,...] [--disable-pass=a,...] [--stats]\n"
	"\n"
	"Compiles MODEL (.onnx, or textual IR ending in .kir) to native code. By\n"
	"default OUT is a shared object exporting one symbol, kiln_model (see\n"
	"docs/abi.md), and a typed C header is written beside it (OUT with its\n"
	"extension replaced by .h). Weights are inside the object; it needs only\n"
	"libc and libm. Run it with `kiln run OUT ...` or from C with libkiln_rt.\n"
	"\n"
	"flags:\n"
	"  -o OUT               output file (for several --emit kinds, the others get\n"
	"                       OUT's stem with their own extension)\n"
	"  --emit KINDS         comma-separated: so (default, plus header), obj, asm,\n"
	"                       llvm (textual LLVM IR after optimisation), header\n"
	"  -O0 .. -O3           optimisation level (default -O2); -O0 runs one kernel per\n"
	"                       op with LLVM's optimisations off, for debugging; -O1\n"
	"                       folds BatchNormalization; -O2 also fuses (kiln opt\n"
	"                       --list-passes shows each level's graph passes)\n"
	"  --passes=a,b,...     run these graph passes instead of the level's pipeline\n"
	"  --disable-pass=a,... skip these graph passes\n"
	"  --target TRIPLE      x86_64-linux-gnu (default: the host) or aarch64-linux-gnu\n"
	"  --cpu CPU            native (default), generic, x86-64-v2, x86-64-v3, x86-64-v4\n"
	"  --name IDENT         C identifier for the header's macros and run function\n"
	"                       (default: from the graph's name)\n"
	"  --shape NAME=DIMS    pin the shape of ONNX input NAME (e.g. input=1x3x224x224)\n"
	"  --stats              print kernels, arena and weight bytes, and stage times\n"
	"  -h, --help           print this help\n"
	"\n"
	"examples:\n"
	"  kiln compile examples/mlp.onnx -o build/mlp.so\n"
	"  kiln compile model.onnx -o model.s --emit asm --cpu x86-64-v3\n"
	"\n"
	"Environment: KILN_CC names the C compiler driver used to link the .so\n"
	"(default cc). Exit status: 0 success; 1 a model error or a failed compile\n"
	"(the message names the file and node); 2 usage error.\n";

static const char *const emit_names[KILN_EMIT_COUNT] = {"so", "obj", "asm", "llvm", "header"};
static const char *const emit_ext[KILN_EMIT_COUNT] = {".so", ".o", ".s", ".ll", ".h"};

typedef struct compile_args {
	const char *model, *out, *triple, *cpu, *name;
	kiln_opt_opts opt; /* -O level and pass lists */
	bool emit[KILN_EMIT_COUNT];
	bool emit_given, stats;
	kiln_cli_pins pins;
} compile_args;

static int parse_emit(compile_args *a, const char *value)
{
	const char *p = value;
	while (*p) {
		size_t len = strcspn(p, ",");
		int k = 0;
		while (k < KILN_EMIT_COUNT && (strlen(emit_names[k]) != len || strncmp(p, emit_names[k], len)))
			k++;
		if (k == KILN_EMIT_COUNT)
			return kiln_cli_usage("compile", "--emit: unknown kind '%.*s' (so, obj, asm, llvm, header)",
			                      (int)len, p);
		a->emit[k] = true;
		p += len + (p[len] == ',');
	}
	a->emit_given = true;
	return KILN_EXIT_OK;
}

static int parse_args(int argc, char **argv, compile_args *a)
{
	a->opt.opt_level = 2;
	int rc_flag = KILN_EXIT_OK;
	for (int i = 0; i < argc;) {
		const char *arg = argv[i], *value;
		if (arg[0] != '-' || !arg[1]) {
			if (a->model)
				return kiln_cli_usage("compile", "more than one model given ('%s' and '%s')",
				                      a->model, arg);
			a->model = arg;
			i++;
		} else if (kiln_cli_is_help(arg)) {
			fputs(help, stdout);
			return -1;
		} else if (!strcmp(arg, "-o")) {
			if (i + 1 >= argc || !argv[i + 1][0])
				return kiln_cli_usage("compile", "-o needs a file name");
			a->out = argv[i + 1];
			i += 2;
		} else if (kiln_cli_pass_flag("compile", argv, argc, &i, &a->opt, &rc_flag)) {
			if (rc_flag)
				return rc_flag;
		} else if (!strcmp(arg, "--stats")) {
			a->stats = true;
			i++;
		} else if (kiln_cli_flag(argv, argc, &i, "--emit", &value)) {
			if (!value || !*value)
				return kiln_cli_usage("compile", "--emit needs a kind (so, obj, asm, llvm, header)");
			int rc = parse_emit(a, value);
			if (rc)
				return rc;
		} else if (kiln_cli_flag(argv, argc, &i, "--target", &value)) {
			if (!value || !*value)
				return kiln_cli_usage("compile", "--target needs a triple");
			a->triple = value;
		} else if (kiln_cli_flag(argv, argc, &i, "--cpu", &value)) {
			if (!value || !*value)
				return kiln_cli_usage("compile", "--cpu needs a CPU name");
			a->cpu = value;
		} else if (kiln_cli_flag(argv, argc, &i, "--name", &value)) {
			if (!value || !*value)
				return kiln_cli_usage("compile", "--name needs a C identifier");
			a->name = value;
		} else if (kiln_cli_shape_flag("compile", argv, argc, &i, &a->pins, &rc_flag)) {
			if (rc_flag)
				return rc_flag;
		} else {
			return kiln_cli_usage("compile", "unknown flag '%s'", arg);
		}
	}
	if (!a->model)
		return kiln_cli_usage("compile", "no model given");
	if (!a->out)
		return kiln_cli_usage("compile", "no output file given (-o OUT)");
	if (!a->emit_given)
		a->emit[KILN_EMIT_SO] = a->emit[KILN_EMIT_HEADER] = true;
	return KILN_EXIT_OK;
}

/* OUT for the first kind asked for; siblings get OUT's stem + their extension. */
static char *path_for(const compile_args *a, int kind, bool primary)
{
	size_t n = strlen(a->out);
	char *p = malloc(n + 8);
	if (!p)
		return NULL;
	memcpy(p, a->out, n + 1);
	if (primary)
		return p;
	char *slash = strrchr(p, '/'), *dot = strrchr(p, '.');
	if (dot && (!slash || dot > slash))
		*dot = 0;
	strcat(p, emit_ext[kind]);
	return p;
}

typedef struct progress {
	bool tty;
	double start;
} progress;

static void on_progress(void *user, const char *stage, int done, int total)
{
	progress *p = user;
	if (!p->tty)
		return;
	if (!strcmp(stage, "lower") && total > 0)
		fprintf(stderr, "\r\033[Kkiln: lowering %d/%d kernels", done + 1, total);
	else
		fprintf(stderr, "\r\033[Kkiln: %s", stage);
	fflush(stderr);
}

static int compile_main(int argc, char **argv)
{
	compile_args a = {0};
	int rc = parse_args(argc, argv, &a);
	if (rc != KILN_EXIT_OK) {
		kiln_cli_pins_free(&a.pins);
		return rc < 0 ? KILN_EXIT_OK : rc;
	}
	/* pass names are checked before the model is read: a typo is a usage error */
	if ((rc = kiln_cli_check_passes("compile", &a.opt)) != KILN_EXIT_OK) {
		kiln_cli_pins_free(&a.pins);
		return rc;
	}
	kiln_graph *g = NULL;
	rc = kiln_cli_load("compile", a.model, &a.pins, &g);
	kiln_cli_pins_free(&a.pins);
	if (rc != KILN_EXIT_OK)
		return rc;

	progress pr = {.tty = isatty(2)};
	kiln_compile_opts o = {.triple = a.triple, .cpu = a.cpu, .opt_level = a.opt.opt_level,
	                       .name = a.name, .progress = on_progress, .progress_user = &pr,
	                       .passes = a.opt.passes, .disable_passes = a.opt.disable};
	kiln_diag d;
	kiln_diag_init(&d, a.model);
	kiln_compiled *c = NULL;
	if (kiln_compile(g, &o, &c, &d) != KILN_OK)
		rc = KILN_EXIT_ERROR;
	kiln_graph_destroy(g);
	/* Emission order: forms that read the module before machine code. */
	static const int order[] = {KILN_EMIT_LLVM, KILN_EMIT_ASM, KILN_EMIT_SO, KILN_EMIT_OBJ,
	                            KILN_EMIT_HEADER};
	int first = -1;
	for (int k = 0; k < KILN_EMIT_COUNT && first < 0; k++)
		if (a.emit[k])
			first = k;
	for (size_t i = 0; rc == KILN_EXIT_OK && i < sizeof order / sizeof *order; i++) {
		int k = order[i];
		if (!a.emit[k])
			continue;
		char *path = path_for(&a, k, k == first);
		if (!path) {
			fprintf(stderr, "kiln: out of memory\n");
			rc = KILN_EXIT_ERROR;
			break;
		}
		kiln_diag_init(&d, path);
		if (kiln_compiled_emit(c, (kiln_emit)k, path, &d) != KILN_OK)
			rc = KILN_EXIT_ERROR;
		free(path);
	}
	if (pr.tty)
		fprintf(stderr, "\r\033[K");
	if (rc == KILN_EXIT_OK && a.stats) {
		const kiln_compile_stats *s = kiln_compiled_stats(c);
		printf("kernels %d\narena %lld bytes (intermediates %lld bytes)\n"
		       "thread scratch %lld bytes\nweights %lld bytes\n"
		       "lower %.3f s  optimize %.3f s  codegen %.3f s\n",
		       s->n_kernels, (long long)s->arena_bytes, (long long)s->intermediate_bytes,
		       (long long)s->thread_scratch_bytes, (long long)s->weight_bytes, s->seconds_lower,
		       s->seconds_optimize, s->seconds_codegen);
	}
	kiln_compiled_destroy(c);
	return rc;
}

const kiln_command kiln_cmd_compile = {
	.name = "compile",
	.summary = "compile a model to a shared object (or .o, asm, LLVM IR, C header)",
	.help = help,
	.run = compile_main,
};
