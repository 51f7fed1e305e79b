// How a layer's work is cut over the pool's threads, where it matters which thread reads what.
//
// Every core has its own L2, and a line another core wrote costs a cross-core transfer (on a
// 2-vCPU Xeon, ~10 GB/s per thread: a MobileNetV2 project 1x1 whose threads each read the
// whole depthwise output, half of it written by the other core, ran as long on 2 threads as
// on 1; the same layer on an input both cores had cached scaled 1.8x). A SpMM that reads more
// per pixel than it writes therefore cuts a large image into one contiguous run of pixels per
// thread (pixel_parts), so no two threads read the same input, and thread t reads about the
// pixels it wrote in a pixel-split layer before; a 1x1 projection instead runs in K stages,
// one run of input channels per thread (sparse_conv.cc), the runs a depthwise conv before it
// wrote on each thread. Depthwise layers keep whole channel planes per thread: half planes per
// thread measured 10-25% slower (Xeon, NCHW), more than the locality gained. Small images
// (14x14, 7x7) split channels or output rows.
#ifndef SPE_COMMON_SPLIT_H_
#define SPE_COMMON_SPLIT_H_

#include <algorithm>
#include <cstdint>

namespace spe {

// Pixels per thread from which a layer splits its image over the threads (28x28 at 2
// threads: 392 each, split; 14x14: 98 each, not).
constexpr int64_t kMinSplitPixels = 256;

// The number of pixel runs to cut an output image of `pixels` into for `threads` threads:
// `threads`, or 1 (no pixel split: the caller splits channels or rows).
inline int pixel_parts(int64_t pixels, int threads) {
  return threads > 1 && pixels >= kMinSplitPixels * threads ? threads : 1;
}

// The start of part i of `units` cut into `parts` contiguous runs (the first units % parts of
// them one longer).
inline int64_t part_begin(int64_t units, int64_t parts, int64_t i) {
  return units / parts * i + std::min(i, units % parts);
}

}  // namespace spe
#endif  // SPE_COMMON_SPLIT_H_
