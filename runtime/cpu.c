/* cpu.c — does this machine run what an artefact was compiled for? Checks
 * the architecture in the descriptor's triple and each name in its feature
 * list ("avx512f,avx2,fma"). A name the runtime cannot check is an error,
 * never a silent pass: running code built for a missing feature dies with
 * SIGILL somewhere inside the model. */
#include <stdio.h>
#include <string.h>

#include "rt.h"

#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

typedef struct feature {
	const char *name;
	bool have;
} feature;

#if defined(__x86_64__)

#define HOST_ARCH "x86_64"
#define X86(name) {name, __builtin_cpu_supports(name) != 0}

/* The names both gcc and clang's __builtin_cpu_supports know (which also
 * checks that the OS saves the AVX/AVX-512 registers). */
static size_t host_features(feature *f, size_t cap)
{
	__builtin_cpu_init();
	const feature all[] = {
		X86("cmov"),       X86("mmx"),        X86("popcnt"),          X86("sse"),
		X86("sse2"),       X86("sse3"),       X86("ssse3"),           X86("sse4.1"),
		X86("sse4.2"),     X86("sse4a"),      X86("avx"),             X86("avx2"),
		X86("fma"),        X86("fma4"),       X86("xop"),             X86("bmi"),
		X86("bmi2"),       X86("aes"),        X86("pclmul"),          X86("gfni"),
		X86("vpclmulqdq"), X86("avx512f"),    X86("avx512vl"),        X86("avx512bw"),
		X86("avx512dq"),   X86("avx512cd"),   X86("avx512vbmi"),      X86("avx512ifma"),
		X86("avx512vnni"), X86("avx512bf16"), X86("avx512vpopcntdq"), X86("avx512vbmi2"),
		X86("avx512bitalg"), X86("avx512vp2intersect"),
	};
	size_t n = sizeof all / sizeof *all;
	n = n < cap ? n : cap;
	memcpy(f, all, n * sizeof *f);
	return n;
}

#elif defined(__aarch64__)

#define HOST_ARCH "aarch64"

/* Linux arm64 AT_HWCAP / AT_HWCAP2 bits (uapi asm/hwcap.h), by LLVM's
 * feature names. A feature needs all bits of both masks. */
static size_t host_features(feature *f, size_t cap)
{
	static const struct {
		const char *name;
		unsigned long hwcap, hwcap2;
	} bits[] = {
		{"fp-armv8", 1ul << 0, 0},           {"neon", 1ul << 1, 0},
		{"aes", 1ul << 3 | 1ul << 4, 0},     {"sha2", 1ul << 5 | 1ul << 6, 0},
		{"crc", 1ul << 7, 0},                {"lse", 1ul << 8, 0},
		{"fullfp16", 1ul << 9 | 1ul << 10, 0}, {"rdm", 1ul << 12, 0},
		{"dotprod", 1ul << 20, 0},           {"sve", 1ul << 22, 0},
		{"sve2", 0, 1ul << 1},               {"i8mm", 0, 1ul << 13},
		{"bf16", 0, 1ul << 14},
	};
	unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
	size_t n = 0;
	for (size_t i = 0; i < sizeof bits / sizeof *bits && n < cap; i++, n++) {
		f[n].name = bits[i].name;
		f[n].have = (hw & bits[i].hwcap) == bits[i].hwcap &&
		            (hw2 & bits[i].hwcap2) == bits[i].hwcap2;
	}
	return n;
}

#else

#define HOST_ARCH ""

static size_t host_features(feature *f, size_t cap)
{
	(void)f;
	(void)cap;
	return 0;
}

#endif

kiln_rt_status kiln_rt_cpu_check(const kiln_abi_model *abi, const char *label, char *err,
                                 size_t err_size)
{
	size_t arch_len = strcspn(abi->triple, "-");
	if (HOST_ARCH[0] && arch_len &&
	    (arch_len != strlen(HOST_ARCH) || strncmp(abi->triple, HOST_ARCH, arch_len)))
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_CPU,
		                    "%s: compiled for %s, this machine is %s", label, abi->triple,
		                    HOST_ARCH);

	feature have[64];
	size_t n_have = host_features(have, sizeof have / sizeof *have);
	char missing[256] = "";
	size_t missing_len = 0;
	for (const char *p = abi->features; *p;) {
		size_t len = strcspn(p, ",");
		size_t i = 0;
		while (i < n_have && (strlen(have[i].name) != len || strncmp(have[i].name, p, len)))
			i++;
		if (len && i == n_have)
			return kiln_rt_fail(err, err_size, KILN_RT_ERR_CPU,
			                    "%s: unknown ISA feature '%.*s' (this runtime cannot "
			                    "check it)", label, (int)len, p);
		if (len && !have[i].have && missing_len < sizeof missing)
			missing_len += (size_t)snprintf(missing + missing_len,
			                                sizeof missing - missing_len, "%s%.*s",
			                                missing_len ? "," : "", (int)len, p);
		p += len + (p[len] == ',');
	}
	if (missing_len)
		return kiln_rt_fail(err, err_size, KILN_RT_ERR_CPU,
		                    "%s: this CPU lacks ISA features the model needs: %s "
		                    "(compiled for %s)", label, missing, abi->cpu);
	return KILN_RT_OK;
}
