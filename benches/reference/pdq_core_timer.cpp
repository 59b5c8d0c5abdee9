// Times Meta's C++ PDQ core exactly as the PyPI package `pdqhash` bundles it
// (its sdist carries ThreatExchange/pdq/cpp), without Python in the loop:
// RGB bytes -> fillFloatLumaFromRGB (the reference's float32 luma) ->
// pdqHash256FromFloatLuma (and, for the dihedral line,
// pdqDihedralHash256esFromFloatLuma), full resolution, one thread.
// This file is ours; the PDQ sources are compiled from the sdist that
// setup.sh downloads into target/ and are never committed.
//
// usage: pdq_core_timer ITERS FILE...   (FILE named rgb-WxH.raw, W*H*3 bytes)
// prints one JSON line per buffer and entry point.
#include <pdq/cpp/common/pdqhashtypes.cpp>
#include <pdq/cpp/common/pdqhamming.cpp>
#include <pdq/cpp/downscaling/downscaling.cpp>
#include <pdq/cpp/hashing/pdqhashing.cpp>
#include <pdq/cpp/hashing/torben.cpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

using namespace facebook::pdq;

static float b64[64][64], b16x64[16][64], b16[16][16], b16aux[16][16];

// Runs f once to warm up, then iters times; returns milliseconds per call.
template <typename F>
static std::vector<double> timed(int iters, F f) {
  f();
  std::vector<double> times;
  for (int i = 0; i < iters; i++) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return times;
}

static void print(const char* impl, int w, int h, std::vector<double> t, const std::string& hashes, int quality) {
  std::sort(t.begin(), t.end());
  size_t n = t.size();
  double median = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
  double mean = std::accumulate(t.begin(), t.end(), 0.0) / n;
  printf("{\"impl\":\"%s\",\"buffer\":\"%dx%d\",\"mean_ms\":%.4f,\"median_ms\":%.4f,\"min_ms\":%.4f,"
         "\"iters\":%zu,%s,\"quality\":%d}\n",
         impl, w, h, mean, median, t[0], n, hashes.c_str(), quality);
  fflush(stdout);
}

int main(int argc, char** argv) {
  char* end = nullptr;
  long iters = argc >= 3 ? strtol(argv[1], &end, 10) : 0;
  if (argc < 3 || *end != '\0' || iters < 1 || iters > 1000000) {
    fprintf(stderr, "usage: %s ITERS FILE...   (ITERS >= 1, FILE named rgb-WxH.raw)\n", argv[0]);
    return 2;
  }
  for (int a = 2; a < argc; a++) {
    std::string path = argv[a];
    int w = 0, h = 0;
    size_t at = path.rfind("rgb-");
    if (at == std::string::npos || sscanf(path.c_str() + at, "rgb-%dx%d.raw", &w, &h) != 2 || w < 1 || h < 1) {
      fprintf(stderr, "%s: name must be rgb-WxH.raw\n", path.c_str());
      return 2;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      fprintf(stderr, "%s: cannot open\n", path.c_str());
      return 2;
    }
    std::vector<uint8_t> rgb((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (rgb.size() != (size_t)w * h * 3) {
      fprintf(stderr, "%s: %zu bytes, expected %zu\n", path.c_str(), rgb.size(), (size_t)w * h * 3);
      return 2;
    }
    std::vector<float> buf1((size_t)w * h), buf2((size_t)w * h);

    hashing::Hash256 hash;
    int quality = 0;
    auto t = timed(iters, [&] {
      downscaling::fillFloatLumaFromRGB(&rgb[0], &rgb[1], &rgb[2], h, w, w * 3, 3, buf1.data());
      hashing::pdqHash256FromFloatLuma(buf1.data(), buf2.data(), h, w, b64, b16x64, b16, hash, quality);
    });
    print("reference-cpp-core", w, h, t, "\"hash\":\"" + hash.format() + "\"", quality);

    hashing::Hash256 d[8];
    t = timed(iters, [&] {
      downscaling::fillFloatLumaFromRGB(&rgb[0], &rgb[1], &rgb[2], h, w, w * 3, 3, buf1.data());
      hashing::pdqDihedralHash256esFromFloatLuma(buf1.data(), buf2.data(), h, w, b64, b16x64, b16, b16aux,
                                                 &d[0], &d[1], &d[2], &d[3], &d[4], &d[5], &d[6], &d[7], quality);
    });
    std::string hashes = "\"hash\":\"" + d[0].format() + "\",\"hashes\":[";
    for (int k = 0; k < 8; k++) hashes += (k ? ",\"" : "\"") + d[k].format() + "\"";
    print("reference-cpp-core-dihedral", w, h, t, hashes + "]", quality);
  }
  return 0;
}
