// Times Meta's C++ PDQ core exactly as the PyPI package `pdqhash` bundles it
// (its sdist carries ThreatExchange/pdq/cpp), without Python in the loop:
// RGB bytes -> fillFloatLumaFromRGB -> pdqHash256FromFloatLuma, full
// resolution, one thread. This file is ours; the PDQ sources are compiled from
// the downloaded sdist and never committed.
//
// usage: pdq_core_timer ITERS FILE...   (FILE named rgb-WxH.raw)
#include <pdq/cpp/common/pdqhashtypes.cpp>
#include <pdq/cpp/common/pdqhamming.cpp>
#include <pdq/cpp/downscaling/downscaling.cpp>
#include <pdq/cpp/hashing/pdqhashing.cpp>
#include <pdq/cpp/hashing/torben.cpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace facebook::pdq;

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s ITERS FILE...\n", argv[0]);
    return 2;
  }
  int iters = std::stoi(argv[1]);
  for (int a = 2; a < argc; a++) {
    std::string path = argv[a];
    int w = 0, h = 0;
    size_t at = path.rfind("rgb-");
    if (at == std::string::npos || sscanf(path.c_str() + at, "rgb-%dx%d.raw", &w, &h) != 2) {
      fprintf(stderr, "%s: name must be rgb-WxH.raw\n", path.c_str());
      return 2;
    }
    std::ifstream in(path, std::ios::binary);
    std::vector<uint8_t> rgb((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (rgb.size() != (size_t)w * h * 3) {
      fprintf(stderr, "%s: expected %d bytes\n", path.c_str(), w * h * 3);
      return 2;
    }
    std::vector<float> buf1(w * h), buf2(w * h);
    static float b64[64][64], b16x64[16][64], b16[16][16];
    hashing::Hash256 hash;
    int quality = 0;
    std::vector<double> times;
    for (int i = 0; i < iters + 1; i++) {
      auto t0 = std::chrono::steady_clock::now();
      downscaling::fillFloatLumaFromRGB(&rgb[0], &rgb[1], &rgb[2], h, w, w * 3, 3, buf1.data());
      hashing::pdqHash256FromFloatLuma(buf1.data(), buf2.data(), h, w, b64, b16x64, b16, hash, quality);
      auto t1 = std::chrono::steady_clock::now();
      if (i > 0) times.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(times.begin(), times.end());
    printf("{\"impl\":\"reference-cpp-core\",\"buffer\":\"%dx%d\",\"median_ms\":%.4f,\"min_ms\":%.4f,\"iters\":%d,\"hash\":\"%s\",\"quality\":%d}\n",
           w, h, times[times.size() / 2], times[0], iters, hash.format().c_str(), quality);
  }
  return 0;
}
