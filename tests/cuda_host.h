// tests/cuda_host.h: what csrc/cuda/*.cu need from CUDA, for the host, so that the GPU kernels' own
// loops (thread indexing, grid striding, float4 groups, random words by element index) can run on a
// machine without a GPU (tests/emulated_gpu.py). Force-included ahead of a .cu file compiled by g++.
// The headers' few __CUDA_ARCH__ intrinsics (bit casts, clz, selects) take their host forms.
#pragma once
#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__

struct dim3 {
  unsigned x, y, z;
};
struct float4 {
  float x, y, z, w;
};

static dim3 gridDim{1, 1, 1}, blockDim{1, 1, 1}, blockIdx{0, 0, 0}, threadIdx{0, 0, 0};

// The next kernel call runs as thread `thread` of block `block` in a grid of `blocks` x `threads`.
extern "C" void qsim_emulated_thread(unsigned blocks, unsigned threads, unsigned block, unsigned thread) {
  gridDim.x = blocks;
  blockDim.x = threads;
  blockIdx.x = block;
  threadIdx.x = thread;
}
