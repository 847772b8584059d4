/* target.c — the CPU target table: which triple, CPU and features LLVM
 * compiles for, how wide the kernels' vectors are (which kernel bitcode is
 * used), and which ISA features the runtime must find before running. */
#include <stdio.h>
#include <string.h>

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

#include "cpu.h"

/* Named CPUs kiln knows how to pick a vector width for. LLVM knows many more
 * names, but gives no C API to ask what a name implies, so kiln only accepts
 * ones it can describe. */
typedef struct cpu_entry {
	const char *name;
	const char *llvm_cpu;
	int vl;
	const char *isa;
} cpu_entry;

static const cpu_entry x86_cpus[] = {
	{"generic", "x86-64", 4, ""},
	{"x86-64", "x86-64", 4, ""},
	{"x86-64-v2", "x86-64-v2", 4, "popcnt,sse4.2"},
	{"x86-64-v3", "x86-64-v3", 8, "avx,avx2,bmi,bmi2,fma,popcnt,sse4.2"},
	{"x86-64-v4", "x86-64-v4", 16,
	 "avx,avx2,avx512bw,avx512cd,avx512dq,avx512f,avx512vl,bmi,bmi2,fma,popcnt,sse4.2"},
};

static const cpu_entry arm_cpus[] = {
	{"generic", "generic", 4, ""},
};

/* Host features the runtime checks when compiling for -cpu native (the ones
 * LLVM's code generation may use for f32/int8 kernels and that the runtime
 * can query). */
static const char *const x86_checked[] = {
	"avx",         "avx2",        "bmi",         "bmi2",       "fma",
	"popcnt",      "sse4.2",      "avx512f",     "avx512bw",   "avx512cd",
	"avx512dq",    "avx512vl",    "avx512vnni",  "avx512bf16", "avx512vbmi",
	"avx512ifma",  "avx512vbmi2", "avx512bitalg", "avx512vpopcntdq",
	"gfni",        "vpclmulqdq",
};

static bool has_feature(const char *features, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = features; (p = strstr(p, name)); p += len)
		if (p > features && p[-1] == '+' && (p[len] == ',' || p[len] == 0))
			return true;
	return false;
}

static void append(char *buf, size_t size, const char *s)
{
	size_t len = strlen(buf);
	snprintf(buf + len, size - len, "%s%s", len ? "," : "", s);
}

static kiln_status init_native(kiln_cpu_target *t, kiln_diag *d)
{
	char *cpu = LLVMGetHostCPUName();
	char *features = LLVMGetHostCPUFeatures();
	snprintf(t->cpu, sizeof t->cpu, "%s", cpu);
	snprintf(t->features, sizeof t->features, "%s", features);
	LLVMDisposeMessage(cpu);
	LLVMDisposeMessage(features);
	if (strlen(t->features) + 1 >= sizeof t->features)
		return kiln_diag_error(d, KILN_ERR_INTERNAL, NULL, "host feature string too long");
	if (t->arch == KILN_CPU_ARCH_X86_64) {
		for (size_t i = 0; i < sizeof x86_checked / sizeof *x86_checked; i++)
			if (has_feature(t->features, x86_checked[i]))
				append(t->isa, sizeof t->isa, x86_checked[i]);
		if (has_feature(t->features, "avx512f") && has_feature(t->features, "avx512vl"))
			t->vl = 16;
		else if (has_feature(t->features, "avx2") && has_feature(t->features, "fma"))
			t->vl = 8;
		else
			t->vl = 4;
	} else {
		t->vl = 4;
	}
	return KILN_OK;
}

kiln_status kiln_cpu_target_init(kiln_cpu_target *t, const char *triple, const char *cpu,
                                 kiln_diag *d)
{
	memset(t, 0, sizeof *t);
	char *host = LLVMGetDefaultTargetTriple();
	char *norm = LLVMNormalizeTargetTriple(triple ? triple : host);
	snprintf(t->triple, sizeof t->triple, "%s", norm);
	bool is_host = !triple || !strcmp(norm, host);
	LLVMDisposeMessage(norm);
	LLVMDisposeMessage(host);

	if (!strncmp(t->triple, "x86_64-", 7))
		t->arch = KILN_CPU_ARCH_X86_64;
	else if (!strncmp(t->triple, "aarch64-", 8))
		t->arch = KILN_CPU_ARCH_AARCH64;
	else
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL,
		                       "target '%s' is not supported (x86_64-linux-gnu, "
		                       "aarch64-linux-gnu)", t->triple);
	if (!strstr(t->triple, "linux"))
		return kiln_diag_error(d, KILN_ERR_UNSUPPORTED, NULL,
		                       "target '%s': only Linux targets are supported", t->triple);

	if (!cpu || !strcmp(cpu, "native")) {
		if (!is_host)
			return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL,
			                       "--cpu native needs the host target; name a CPU "
			                       "for '%s' (e.g. generic)", t->triple);
		return init_native(t, d);
	}
	const cpu_entry *table = t->arch == KILN_CPU_ARCH_X86_64 ? x86_cpus : arm_cpus;
	size_t n = t->arch == KILN_CPU_ARCH_X86_64 ? sizeof x86_cpus / sizeof *x86_cpus
	                                            : sizeof arm_cpus / sizeof *arm_cpus;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(table[i].name, cpu)) {
			snprintf(t->cpu, sizeof t->cpu, "%s", table[i].llvm_cpu);
			snprintf(t->isa, sizeof t->isa, "%s", table[i].isa);
			t->vl = table[i].vl;
			return KILN_OK;
		}
	char known[256] = "native";
	for (size_t i = 0; i < n; i++)
		append(known, sizeof known, table[i].name);
	return kiln_diag_error(d, KILN_ERR_INVALID_ARG, NULL, "unknown --cpu '%s' for %s (known: %s)",
	                       cpu, t->triple, known);
}
