#include "cpu/common/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif

namespace nk::cpu {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  f.avx2 = __builtin_cpu_supports("avx2");
  f.fma = __builtin_cpu_supports("fma");
  f.avx512f = __builtin_cpu_supports("avx512f");
  f.avx512dq = __builtin_cpu_supports("avx512dq");
  f.avx512bw = __builtin_cpu_supports("avx512bw");
  f.avx512vnni = __builtin_cpu_supports("avx512vnni");
  unsigned a = 0, b = 0, c = 0, d = 0;  // AVX-VNNI: CPUID leaf 7, sub-leaf 1, EAX bit 4 (the OS
  // saves the 256-bit state where avx2 is reported)
  f.avxvnni = f.avx2 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1u);
#endif
  return f;
}

Isa widest(const CpuFeatures& f) {
  if (!(f.avx2 && f.fma)) return Isa::portable;
  if (f.avx512f && f.avx512dq && f.avx512bw) return Isa::avx512;
  return Isa::avx2;
}

Isa clamp(Isa want) { return static_cast<int>(want) < static_cast<int>(best_isa()) ? want : best_isa(); }

Isa load_time_choice() {
  Isa isa = best_isa();
  if (const char* env = std::getenv("NUMKERN_ISA")) {
    Isa want;
    if (parse_isa(env, &want)) isa = clamp(want);
  }
  return isa;
}

std::atomic<int>& slot() {
  static std::atomic<int> s{static_cast<int>(load_time_choice())};
  return s;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}
Isa best_isa() {
  static const Isa b = widest(cpu_features());
  return b;
}
Isa active_isa() { return static_cast<Isa>(slot().load(std::memory_order_relaxed)); }
bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(best_isa()); }
void set_isa(Isa isa) { slot().store(static_cast<int>(clamp(isa)), std::memory_order_relaxed); }
void reset_isa() { slot().store(static_cast<int>(load_time_choice()), std::memory_order_relaxed); }
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::portable: return "portable";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "portable";
}
bool parse_isa(const char* name, Isa* out) {
  for (Isa i : {Isa::portable, Isa::avx2, Isa::avx512})
    if (std::strcmp(name, isa_name(i)) == 0) {
      *out = i;
      return true;
    }
  return false;
}

// Detect at load, not at the first kernel call.
static const bool kDetectedAtLoad = (cpu_features(), slot(), true);

}  // namespace nk::cpu
