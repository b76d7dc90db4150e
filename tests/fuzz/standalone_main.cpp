// A small fuzz driver for LLVMFuzzerTestOneInput targets where libFuzzer (clang) is not
// available: runs every corpus file once, then random and mutated inputs until a time or run
// budget is spent.  No coverage feedback, so it relies on the targets mapping any byte string to
// valid-looking metadata (tests/fuzz/fuzz_input.hpp).  Build it with the sanitizers
// (tests/fuzz/run_fuzz.sh): a sanitizer report or a failed property aborts, after the input
// is written to <artifact_prefix>crash-<n>.
//
//   fuzz_target [-seconds=S] [-runs=N] [-seed=N] [-max_len=N] [-artifact_prefix=P] [corpus...]
//
// A corpus argument is a file or a directory of files.  Prints "executions: N" at the end.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
extern "C" void __sanitizer_set_death_callback(void (*)(void)) __attribute__((weak));

namespace {
using Bytes = std::vector<std::uint8_t>;

const Bytes* g_current = nullptr;
std::string g_prefix = "./";
volatile std::sig_atomic_t g_dumped = 0;

void dump_current() {
  if (g_dumped || !g_current) return;
  g_dumped = 1;
  const std::string path = g_prefix + "crash-" + std::to_string(static_cast<long>(getpid()));
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(g_current->data(), 1, g_current->size(), f);
    std::fclose(f);
    std::fprintf(stderr, "standalone fuzz driver: input written to %s (%zu bytes)\n", path.c_str(),
                 g_current->size());
  }
}

void on_abort(int sig) {
  dump_current();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

bool read_file(const std::string& path, Bytes* out) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  std::uint8_t buf[4096];
  std::size_t n;
  out->clear();
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->insert(out->end(), buf, buf + n);
  std::fclose(f);
  return true;
}

void collect(const std::string& path, std::vector<Bytes>* corpus) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    DIR* d = opendir(path.c_str());
    if (!d) return;
    std::vector<std::string> names;
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') names.push_back(path + "/" + e->d_name);
    closedir(d);
    for (const auto& n : names) collect(n, corpus);
  } else {
    Bytes b;
    if (read_file(path, &b)) corpus->push_back(std::move(b));
  }
}

struct Rng {  // xorshift64*: reproducible from -seed
  std::uint64_t s;
  std::uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ULL;
  }
  std::size_t below(std::size_t n) { return n ? static_cast<std::size_t>(next() % n) : 0; }
};

// Random length, skewed short: most of the metadata lives in the first bytes.
Bytes random_input(Rng& rng, std::size_t max_len) {
  std::size_t len = rng.below(4) == 0 ? rng.below(max_len + 1) : rng.below(std::min<std::size_t>(max_len, 64) + 1);
  Bytes b(len);
  for (auto& x : b) x = static_cast<std::uint8_t>(rng.next() >> 56);
  return b;
}

void mutate(Bytes& b, Rng& rng, std::size_t max_len, const std::vector<Bytes>& pool) {
  const int steps = 1 + static_cast<int>(rng.below(4));
  for (int s = 0; s < steps; ++s) {
    switch (rng.below(6)) {
      case 0:  // flip a bit
        if (!b.empty()) b[rng.below(b.size())] ^= static_cast<std::uint8_t>(1u << rng.below(8));
        break;
      case 1:  // set a byte to an interesting value
        if (!b.empty()) {
          static const std::uint8_t v[] = {0, 1, 2, 3, 4, 7, 8, 15, 16, 0x7f, 0x80, 0x88, 0xff};
          b[rng.below(b.size())] = v[rng.below(sizeof v)];
        }
        break;
      case 2:  // random byte
        if (!b.empty()) b[rng.below(b.size())] = static_cast<std::uint8_t>(rng.next() >> 56);
        break;
      case 3:  // insert
        if (b.size() < max_len) b.insert(b.begin() + static_cast<long>(rng.below(b.size() + 1)), static_cast<std::uint8_t>(rng.next() >> 56));
        break;
      case 4:  // erase
        if (!b.empty()) b.erase(b.begin() + static_cast<long>(rng.below(b.size())));
        break;
      default:  // splice the tail of another input
        if (!pool.empty()) {
          const Bytes& o = pool[rng.below(pool.size())];
          const std::size_t at = rng.below(b.size() + 1), from = rng.below(o.size() + 1);
          b.resize(at);
          b.insert(b.end(), o.begin() + static_cast<long>(from), o.end());
          if (b.size() > max_len) b.resize(max_len);
        }
        break;
    }
  }
}

bool flag(const char* arg, const char* name, std::string* value) {
  const std::size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  *value = arg + n + 1;
  return true;
}
}  // namespace

int main(int argc, char** argv) {
  double seconds = 10;
  long long max_runs = -1;
  std::uint64_t seed = 0x9e3779b97f4a7c15ULL;
  std::size_t max_len = 4096;
  std::vector<Bytes> corpus;
  for (int i = 1; i < argc; ++i) {
    std::string v;
    if (flag(argv[i], "-seconds", &v) || flag(argv[i], "-max_total_time", &v)) seconds = std::atof(v.c_str());
    else if (flag(argv[i], "-runs", &v)) max_runs = std::atoll(v.c_str());
    else if (flag(argv[i], "-seed", &v)) seed = std::strtoull(v.c_str(), nullptr, 0) | 1;
    else if (flag(argv[i], "-max_len", &v)) max_len = static_cast<std::size_t>(std::atoll(v.c_str()));
    else if (flag(argv[i], "-artifact_prefix", &v)) g_prefix = v;
    else if (argv[i][0] == '-') std::fprintf(stderr, "ignoring unknown flag %s\n", argv[i]);
    else collect(argv[i], &corpus);
  }
  if (__sanitizer_set_death_callback) __sanitizer_set_death_callback(dump_current);
  std::signal(SIGABRT, on_abort);
  std::signal(SIGSEGV, on_abort);

  long long runs = 0;
  for (const Bytes& b : corpus) {  // the corpus (regression inputs) first, every time
    g_current = &b;
    LLVMFuzzerTestOneInput(b.data(), b.size());
    ++runs;
  }
  std::fprintf(stderr, "corpus: %zu inputs passed\n", corpus.size());
  Rng rng{seed};
  std::vector<Bytes> pool = corpus;
  const auto start = std::chrono::steady_clock::now();
  Bytes input;
  g_current = &input;
  for (long long r = 0; max_runs < 0 || r < max_runs; ++r) {
    if ((r & 63) == 0) {
      const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (max_runs < 0 && el >= seconds) break;
    }
    if (!pool.empty() && rng.below(2) == 0) {
      input = pool[rng.below(pool.size())];
      mutate(input, rng, max_len, pool);
    } else {
      input = random_input(rng, max_len);
    }
    LLVMFuzzerTestOneInput(input.data(), input.size());
    ++runs;
    if (pool.size() < 256 && rng.below(64) == 0) pool.push_back(input);  // cheap diversity
  }
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("executions: %lld in %.1f s (%.0f/s), seed %llu\n", runs, el, el > 0 ? runs / el : 0.0,
              static_cast<unsigned long long>(seed));
  return 0;
}
