/* CPU feature detection and the choice of kernel path, done once per process. */
#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernels/gemm_big.h"
#include "kernels/kernels_impl.h"
#include "slm.h"

/* Linux asks a process to request the AMX tile state before using it (arch_prctl). */
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static slm_cpu_features cpu_features;
static slm_isa isa_supported = SLM_ISA_SCALAR;
static slm_isa isa_selected = SLM_ISA_SCALAR;
static slm_kernel_table tables[SLM_ISA_COUNT];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static slm_gemm_big gemm_big_avx512;

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static void detect_features(slm_cpu_features *f) {
    memset(f, 0, sizeof *f);
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return;
    bool osxsave = ecx & (1u << 27);
    bool avx = ecx & (1u << 28);
    f->fma = ecx & (1u << 12);
    f->f16c = ecx & (1u << 29);
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    f->os_ymm = avx && (xcr0 & 0x6) == 0x6;
    f->os_zmm = f->os_ymm && (xcr0 & 0xe0) == 0xe0;
    bool os_tiles = (xcr0 & (3u << 17)) == (3u << 17);
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    f->avx2 = ebx & (1u << 5);
    f->avx512f = ebx & (1u << 16);
    f->avx512dq = ebx & (1u << 17);
    f->avx512bw = ebx & (1u << 30);
    f->avx512vl = ebx & (1u << 31);
    f->avx512vnni = ecx & (1u << 11);
    f->amx_bf16 = edx & (1u << 22);
    f->amx_tile = edx & (1u << 24);
    f->amx_int8 = edx & (1u << 25);
    unsigned max_sub = eax;
    if (max_sub >= 1) {
        __cpuid_count(7, 1, eax, ebx, ecx, edx);
        f->avx512bf16 = eax & (1u << 5);
    }
    if (f->amx_tile && os_tiles)
        f->os_amx = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static slm_isa best_isa(const slm_cpu_features *f) {
    bool avx2 = f->os_ymm && f->avx2 && f->fma && f->f16c;
    bool avx512 = avx2 && f->os_zmm && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx512vnni;
    /* AMX tiles are detected (and permission requested) but no AMX kernels ship yet: this
     * project's machines have no AMX to test them on, so such CPUs run the AVX-512 path. */
    if (avx512) return SLM_ISA_AVX512;
    if (avx2) return SLM_ISA_AVX2;
    return SLM_ISA_SCALAR;
}

const char *slm_isa_level_name(slm_isa isa) {
    switch (isa) {
    case SLM_ISA_SCALAR: return "scalar";
    case SLM_ISA_AVX2: return "avx2";
    case SLM_ISA_AVX512: return "avx512";
    case SLM_ISA_AMX: return "amx";
    default: return "unknown";
    }
}

static void init_kernels(void) {
    detect_features(&cpu_features);
    isa_supported = best_isa(&cpu_features);
    isa_selected = isa_supported;
    const char *want = getenv("SLM_ISA");
    if (want && *want) {
        int level = -1;
        for (int i = 0; i < SLM_ISA_COUNT; i++)
            if (strcmp(want, slm_isa_level_name((slm_isa)i)) == 0) level = i;
        if (level < 0) {
            fprintf(stderr, "slm: SLM_ISA=%s is not one of scalar, avx2, avx512, amx; using %s\n", want,
                    slm_isa_level_name(isa_supported));
        } else if (level > (int)isa_supported) {
            fprintf(stderr, "slm: SLM_ISA=%s is beyond what this CPU (or this build) runs; using %s\n", want,
                    slm_isa_level_name(isa_supported));
        } else {
            isa_selected = (slm_isa)level;
        }
    }
    slm_kernels_fill_scalar(&tables[SLM_ISA_SCALAR]);
    if (isa_supported >= SLM_ISA_AVX2) {
        tables[SLM_ISA_AVX2] = tables[SLM_ISA_SCALAR];
        slm_kernels_fill_avx2(&tables[SLM_ISA_AVX2]);
    }
    if (isa_supported >= SLM_ISA_AVX512) {
        tables[SLM_ISA_AVX512] = tables[SLM_ISA_AVX2];
        slm_kernels_fill_avx512(&tables[SLM_ISA_AVX512]);
        slm_kernels_fill_packed_avx512(&tables[SLM_ISA_AVX512]);
        slm_gemm_big_fill_avx512(&gemm_big_avx512);
        tables[SLM_ISA_AVX512].big = &gemm_big_avx512;
        slm_kernels_fill_i16_avx512(&tables[SLM_ISA_AVX512]);
    }
}

const slm_cpu_features *slm_cpu_features_get(void) {
    pthread_once(&init_once, init_kernels);
    return &cpu_features;
}

slm_isa slm_isa_supported(void) {
    pthread_once(&init_once, init_kernels);
    return isa_supported;
}

slm_isa slm_isa_selected(void) {
    pthread_once(&init_once, init_kernels);
    return isa_selected;
}

const slm_kernel_table *slm_kernels_active(void) {
    pthread_once(&init_once, init_kernels);
    return &tables[isa_selected];
}

const slm_kernel_table *slm_kernels_for_isa(slm_isa isa) {
    pthread_once(&init_once, init_kernels);
    if ((int)isa < 0 || isa > isa_supported || isa >= SLM_ISA_COUNT) return NULL;
    return &tables[isa];
}

const char *slm_kernels_isa(void) {
    return slm_isa_level_name(slm_isa_selected());
}

const char *slm_isa_name(void) {
    return slm_kernels_isa();
}
