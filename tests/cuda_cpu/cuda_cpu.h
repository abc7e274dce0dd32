// The CUDA built-ins the generated kernels use, for a CPU build of the same text (tests/cuda_cpu).
// A launch is a loop over grid x block that sets blockIdx and threadIdx before each call, so a
// kernel sees exactly the indices it would on a GPU; the math functions are the C library's,
// with the float and double overloads CUDA provides.
#pragma once
#include <cmath>
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__

struct cuda_cpu_dim3 {
    unsigned int x, y, z;
};

static cuda_cpu_dim3 threadIdx, blockIdx, blockDim, gridDim;

using std::isfinite;
using std::isnan;
