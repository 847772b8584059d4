/* cli.h — the kiln command-line tool's one internal header.
 *
 *   kiln.c         main: global flags, help, dispatch to a command
 *   cmd_common.c   what every command shares: usage errors, --shape parsing,
 *                  loading a model (.onnx or .kir)
 *   cmd_inspect.c  kiln inspect: textual IR and a summary (ops, FLOPs, params)
 *   cmd_run.c      kiln run: the interpreter, or a compiled .so through
 *                  libkiln_rt, on .npy inputs
 *   cmd_run_check.c  kiln run --check: compiled kernels against the
 *                  interpreter, kernel by kernel
 *   cmd_compile.c  kiln compile: a model to a .so (+ header), .o, asm, LLVM IR
 *   cmd_opt.c      kiln opt: graph passes over a model, the IR printed
 *   cmd_bench.c    kiln bench: variants (unfused, fused) timed side by side
 *   cmd_graph.c    kiln graph: the graph after the passes drawn with Graphviz,
 *                  fusions as clusters
 *
 * Exit codes: 0 success, 1 an error in a file or while running (the message
 * names the file), 2 a usage error (bad flag or argument). */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include "kiln.h"


enum {
	KILN_EXIT_OK = 0,
	KILN_EXIT_ERROR = 1,
	KILN_EXIT_USAGE = 2,
};

/* One subcommand: `run` gets argv after the command name. */
typedef struct kiln_command {
	const char *name;
	const char *summary; /* one line, for `kiln --help` */
	const char *help;    /* the full text of `kiln help NAME` */
	int (*run)(int argc, char **argv);
} kiln_command;

extern const kiln_command kiln_cmd_inspect;
extern const kiln_command kiln_cmd_run;
extern const kiln_command kiln_cmd_compile;
extern const kiln_command kiln_cmd_opt;
extern const kiln_command kiln_cmd_bench;
extern const kiln_command kiln_cmd_graph;

/* Prints "kiln: MESSAGE" and "Run 'kiln CMD --help' for usage." to stderr;
 * returns KILN_EXIT_USAGE. cmd NULL points at `kiln --help`. */
int kiln_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True if arg is "--help" or "-h". */
bool kiln_cli_is_help(const char *arg);

/* Matches "--NAME VALUE" and "--NAME=VALUE" at argv[*i]. On a match sets
 * *value (NULL if VALUE is missing: the caller reports it), advances *i past
 * what it consumed and returns true. */
bool kiln_cli_flag(char **argv, int argc, int *i, const char *name, const char **value);

/* The --shape flags of one command. */
typedef struct kiln_cli_pins {
	kiln_shape_pin *pins;
	int n;
} kiln_cli_pins;

/* Parses "NAME=DIMxDIM..." (e.g. input=1x3x224x224) and appends it; a usage
 * error (message printed) returns false. */
bool kiln_cli_add_pin(kiln_cli_pins *p, const char *cmd, const char *spec);
void kiln_cli_pins_free(kiln_cli_pins *p);
/* --shape NAME=DIMS at argv[*i]: true when it was one (consumed, pinned);
 * a missing or bad value sets *rc to the usage error. */
bool kiln_cli_shape_flag(const char *cmd, char **argv, int argc, int *i, kiln_cli_pins *p,
                         int *rc);

/* Writes the graph's input names, "'a', 'b'" (or "none"), into buf. */
void kiln_cli_input_list(const kiln_graph *g, char *buf, size_t size);

/* Loads MODEL: textual IR if its name ends in ".kir", ONNX otherwise. Pins
 * apply to ONNX models only. Errors are printed; returns KILN_EXIT_OK or the
 * exit code to return. */
int kiln_cli_load(const char *cmd, const char *path, const kiln_cli_pins *pins,
                  kiln_graph **out);

/* The pass pipeline flags opt, graph and compile share: -O0..-O3,
 * --passes=LIST, --disable-pass=LIST. True when argv[*i] was one (consumed,
 * stored in o); a missing value sets *rc to the usage error. */
bool kiln_cli_pass_flag(const char *cmd, char **argv, int argc, int *i, kiln_opt_opts *o,
                        int *rc);
/* Checks every pass name in o before a model is read: an unknown one is
 * printed with the usage hint and returns KILN_EXIT_USAGE. */
int kiln_cli_check_passes(const char *cmd, const kiln_opt_opts *o);

/* kiln run MODEL --check (cmd_run_check.c). */
typedef struct kiln_cli_check_opts {
	const char *model;
	int opt_level;
	int threads;       /* 0: the runtime's default */
	double rtol, atol; /* f16/bf16 get at least rtol 1e-2 */
	double sum_tol;    /* rounding allowance for long sums (cmd_run_check.c) */
	const char *dump_dir; /* NULL: no reproducer */
} kiln_cli_check_opts;

/* Compiles g's optimised graph with every kernel output exposed, runs it on
 * inputs (one per graph input) and compares kernel by kernel with the
 * interpreter; prints the report. Returns KILN_EXIT_OK when every kernel and
 * output is within tolerance, KILN_EXIT_ERROR otherwise. */
int kiln_cli_check(const kiln_cli_check_opts *o, const kiln_graph *g, const kiln_tensor *inputs);

#endif
