/* kiln.c — the kiln command-line tool: global flags, help, and dispatch to
 * one subcommand (see cli.h for the list). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const kiln_command *const commands[] = {
	&kiln_cmd_bench,
	&kiln_cmd_compile,
	&kiln_cmd_graph,
	&kiln_cmd_inspect,
	&kiln_cmd_opt,
	&kiln_cmd_run,
};
#define N_COMMANDS (int)(sizeof commands / sizeof *commands)

static void print_help(void)
{
	printf("usage: kiln [--help] [--version] COMMAND [ARGS]\n"
	       "\n"
	       "kiln is an ahead-of-time compiler for ONNX models: it imports ONNX models\n"
	       "and textual IR (.kir), optimises them with passes (BatchNorm folding, fusion)\n"
	       "and compiles them to native shared objects that libkiln_rt runs; its\n"
	       "reference interpreter runs any model too.\n"
	       "\n"
	       "commands:\n");
	for (int i = 0; i < N_COMMANDS; i++)
		printf("  %-9s %s\n", commands[i]->name, commands[i]->summary);
	printf("\n"
	       "flags:\n"
	       "  -h, --help     print this help and exit\n"
	       "  --version      print kiln's version and exit\n"
	       "\n"
	       "Run 'kiln help COMMAND' or 'kiln COMMAND --help' for a command's flags.\n"
	       "Exit status: 0 success, 1 error (bad model, input or run), 2 usage error.\n");
}

static const kiln_command *find_command(const char *name)
{
	for (int i = 0; i < N_COMMANDS; i++)
		if (!strcmp(commands[i]->name, name))
			return commands[i];
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return kiln_cli_usage(NULL, "no command given");
	const char *arg = argv[1];
	if (kiln_cli_is_help(arg)) {
		print_help();
		return KILN_EXIT_OK;
	}
	if (!strcmp(arg, "--version")) {
		printf("kiln %s\n", KILN_VERSION);
		return KILN_EXIT_OK;
	}
	if (!strcmp(arg, "help")) {
		if (argc == 2) {
			print_help();
			return KILN_EXIT_OK;
		}
		if (argc > 3)
			return kiln_cli_usage(NULL, "'help' takes one command name");
		const kiln_command *c = find_command(argv[2]);
		if (!c)
			return kiln_cli_usage(NULL, "unknown command '%s'", argv[2]);
		fputs(c->help, stdout);
		return KILN_EXIT_OK;
	}
	if (arg[0] == '-')
		return kiln_cli_usage(NULL, "unknown flag '%s'", arg);
	const kiln_command *c = find_command(arg);
	if (!c)
		return kiln_cli_usage(NULL, "unknown command '%s'", arg);
	return c->run(argc - 2, argv + 2);
}
