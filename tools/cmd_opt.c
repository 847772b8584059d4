/* cmd_opt.c — `kiln opt`: runs graph passes over a model and prints the
 * resulting textual IR (what the FileCheck tests in tests/ir read). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
	"usage: kiln opt MODEL [-O0..3 | --passes=a,b,...] [--disable-pass=NAME,...]\n"
	"                [--print-after=NAME|all] [--verify-each] [--full-constants]\n"
	"                [--shape NAME=DIMS ...] [--list-passes]\n"
	"\n"
	"Imports MODEL (.onnx, or textual IR if the name ends in .kir), runs graph\n"
	"passes over it and prints the resulting textual IR on stdout.\n"
	"\n"
	"flags:\n"
	"  -O0 .. -O3             run that level's pipeline (default -O2; kiln compile\n"
	"                         runs the same one)\n"
	"  --passes=a,b,...       run exactly these passes, in this order\n"
	"  --disable-pass=a,...   skip these passes\n"
	"  --print-after=NAME|all print the IR to stderr after that pass (or every one)\n"
	"  --verify-each          run the verifier after every pass\n"
	"  --full-constants       print every element of every constant\n"
	"  --shape NAME=DIMS      pin the shape of ONNX input NAME (e.g. input=1x3x224x224)\n"
	"  --list-passes          list the passes and the -O pipelines, then exit\n"
	"  -h, --help             print this help\n"
	"\n"
	"examples:\n"
	"  kiln opt model.onnx --passes=fold-batchnorm,fuse-output,dce\n"
	"  kiln opt net.kir --passes=fuse-output --print-after=all --verify-each\n"
	"\n"
	"Exit status: 0 success, 1 the model could not be loaded or a pass failed,\n"
	"2 usage error (an unknown pass is one).\n";

static void list_passes(void)
{
	printf("passes:\n");
	for (int i = 0; kiln_pass_name(i); i++)
		printf("  %-16s %s\n", kiln_pass_name(i), kiln_pass_desc(i));
	printf("pipelines:\n");
	for (int o = 0; o <= 3; o++)
		printf("  -O%d  %s\n", o, *kiln_pipeline(o) ? kiln_pipeline(o) : "(none)");
}

typedef struct print_ctx {
	bool full;
	bool failed;
} print_ctx;

static void print_after(void *user, const char *pass, const kiln_graph *g)
{
	print_ctx *p = user;
	kiln_print_opts opts = {.full_constants = p->full};
	char *text = kiln_graph_print(g, &opts);
	if (!text) {
		p->failed = true;
		return;
	}
	fprintf(stderr, "// ---- IR after pass %s ----\n%s", pass, text);
	free(text);
}

static int opt_main(int argc, char **argv)
{
	const char *model = NULL, *value;
	kiln_opt_opts oo = {.opt_level = 2};
	print_ctx pc = {0};
	bool only_positional = false;
	kiln_cli_pins pins = {0};
	int rc = KILN_EXIT_OK;
	for (int i = 0; i < argc && rc == KILN_EXIT_OK;) {
		const char *arg = argv[i];
		if (only_positional || arg[0] != '-' || !arg[1]) {
			if (model)
				rc = kiln_cli_usage("opt", "more than one model given ('%s' and '%s')", model,
				                    arg);
			model = arg;
			i++;
		} else if (!strcmp(arg, "--")) {
			only_positional = true;
			i++;
		} else if (kiln_cli_is_help(arg)) {
			fputs(help, stdout);
			kiln_cli_pins_free(&pins);
			return KILN_EXIT_OK;
		} else if (!strcmp(arg, "--list-passes")) {
			list_passes();
			kiln_cli_pins_free(&pins);
			return KILN_EXIT_OK;
		} else if (kiln_cli_pass_flag("opt", argv, argc, &i, &oo, &rc)) {
			continue;
		} else if (!strcmp(arg, "--verify-each")) {
			oo.verify_each = true;
			i++;
		} else if (!strcmp(arg, "--full-constants")) {
			pc.full = true;
			i++;
		} else if (kiln_cli_flag(argv, argc, &i, "--print-after", &value)) {
			if (!value)
				rc = kiln_cli_usage("opt", "--print-after needs a pass name or 'all'");
			oo.print_after = value;
		} else if (kiln_cli_shape_flag("opt", argv, argc, &i, &pins, &rc)) {
			continue;
		} else {
			rc = kiln_cli_usage("opt", "unknown flag '%s'", arg);
		}
	}
	if (rc == KILN_EXIT_OK && !model)
		rc = kiln_cli_usage("opt", "no model given");
	if (rc != KILN_EXIT_OK) {
		kiln_cli_pins_free(&pins);
		return rc;
	}
	/* pass names are checked before the model is read: a typo is a usage error */
	if ((rc = kiln_cli_check_passes("opt", &oo)) != KILN_EXIT_OK) {
		kiln_cli_pins_free(&pins);
		return rc;
	}
	kiln_graph *g = NULL;
	rc = kiln_cli_load("opt", model, &pins, &g);
	kiln_cli_pins_free(&pins);
	if (rc != KILN_EXIT_OK)
		return rc;
	kiln_diag d;
	kiln_diag_init(&d, model);
	oo.print = print_after;
	oo.print_user = &pc;
	kiln_status s = kiln_optimize(g, &oo, &d);
	char *text = NULL;
	if (s == KILN_OK && !pc.failed) {
		kiln_print_opts opts = {.full_constants = pc.full};
		text = kiln_graph_print(g, &opts);
		if (!text)
			fprintf(stderr, "%s: out of memory printing the IR\n", model);
	}
	kiln_graph_destroy(g);
	if (!text)
		return KILN_EXIT_ERROR;
	fputs(text, stdout);
	free(text);
	return KILN_EXIT_OK;
}

const kiln_command kiln_cmd_opt = {
	.name = "opt",
	.summary = "run optimisation passes over a model and print the resulting IR",
	.help = help,
	.run = opt_main,
};
