// Greedy NMS on the GPU for boxes already sorted by descending score.
//
// Pass 1 (nms_mask_kernel): a grid of 64 x 64 tiles over the upper triangle of the IoU matrix.
// Each thread block loads 64 "column" boxes into shared memory and each of its threads, one
// "row" box, sets bit j of a 64-bit word when its IoU with column box j is above the threshold.
// mask[i * col_blocks + c] holds row i's bits for column block c (only c >= i / 64 is written).
//
// Pass 2 (nms_reduce_kernel): one thread block walks the row blocks in score order. It loads a
// row block's diagonal words into shared memory, lets one thread resolve the 64 rows of the
// block sequentially, then all threads OR the kept rows' words into the "removed" bits of the
// later column blocks. The mask never leaves the GPU (torchvision copies it to the host).
//
// Class-aware NMS compares labels in pass 1 (boxes of different labels never suppress each
// other) instead of offsetting boxes per class: offsets of up to 80 x 640 px would cost float32
// about 0.004 px of every coordinate, enough to flip IoUs that sit at the threshold.
//
// Only the CUDA runtime is used here, so this file compiles with nvcc alone; nms.cpp binds it
// to PyTorch. IoU is inter / (area_a + area_b - inter) in float32, and a box is suppressed
// when it is strictly above the threshold, as in torchvision.

#include <cstdint>
#include <cuda_runtime.h>

namespace detector_nms {

constexpr int kBlock = 64;

__device__ __forceinline__ bool iou_above(const float* a, const float* b, float threshold) {
  const float left = fmaxf(a[0], b[0]), right = fminf(a[2], b[2]);
  const float top = fmaxf(a[1], b[1]), bottom = fminf(a[3], b[3]);
  const float width = fmaxf(right - left, 0.0f), height = fmaxf(bottom - top, 0.0f);
  const float inter = width * height;
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  return inter / (area_a + area_b - inter) > threshold;
}

__global__ void nms_mask_kernel(int n, int col_blocks, float threshold, const float* __restrict__ boxes,
                                const int* __restrict__ labels, unsigned long long* __restrict__ mask) {
  const int row_block = blockIdx.y;
  const int col_block = blockIdx.x;
  if (row_block > col_block) return;  // the lower triangle is never needed
  const int row_size = min(n - row_block * kBlock, kBlock);
  const int col_size = min(n - col_block * kBlock, kBlock);

  __shared__ float column_boxes[kBlock * 4];
  __shared__ int column_labels[kBlock];
  if (threadIdx.x < col_size) {
    const float* src = boxes + (col_block * kBlock + threadIdx.x) * 4;
    for (int k = 0; k < 4; ++k) column_boxes[threadIdx.x * 4 + k] = src[k];
    column_labels[threadIdx.x] = labels ? labels[col_block * kBlock + threadIdx.x] : 0;
  }
  __syncthreads();

  if (threadIdx.x < row_size) {
    const int row = row_block * kBlock + threadIdx.x;
    float box[4];
    for (int k = 0; k < 4; ++k) box[k] = boxes[row * 4 + k];
    const int label = labels ? labels[row] : 0;
    unsigned long long bits = 0;
    const int start = row_block == col_block ? threadIdx.x + 1 : 0;
    for (int j = start; j < col_size; ++j) {
      if (column_labels[j] == label && iou_above(box, column_boxes + j * 4, threshold)) bits |= 1ULL << j;
    }
    mask[static_cast<size_t>(row) * col_blocks + col_block] = bits;
  }
}

__global__ void nms_reduce_kernel(int n, int col_blocks, const unsigned long long* __restrict__ mask,
                                  unsigned long long* __restrict__ keep_words) {
  extern __shared__ unsigned long long removed[];  // col_blocks words
  __shared__ unsigned long long diagonal[kBlock];
  __shared__ unsigned long long kept_now;
  for (int w = threadIdx.x; w < col_blocks; w += blockDim.x) removed[w] = 0;
  __syncthreads();

  for (int rb = 0; rb < col_blocks; ++rb) {
    const int rows = min(n - rb * kBlock, kBlock);
    if (threadIdx.x < rows) diagonal[threadIdx.x] = mask[static_cast<size_t>(rb * kBlock + threadIdx.x) * col_blocks + rb];
    __syncthreads();
    if (threadIdx.x == 0) {
      unsigned long long gone = removed[rb];
      unsigned long long kept = 0;
      for (int r = 0; r < rows; ++r) {
        if (!((gone >> r) & 1ULL)) {
          kept |= 1ULL << r;
          gone |= diagonal[r];
        }
      }
      kept_now = kept;
      keep_words[rb] = kept;
    }
    __syncthreads();
    const unsigned long long kept = kept_now;
    for (int w = rb + 1 + threadIdx.x; w < col_blocks; w += blockDim.x) {
      unsigned long long gone = removed[w];
      for (unsigned long long k = kept; k; k &= k - 1) {
        const int r = __ffsll(static_cast<long long>(k)) - 1;
        gone |= mask[static_cast<size_t>(rb * kBlock + r) * col_blocks + w];
      }
      removed[w] = gone;
    }
    __syncthreads();
  }
}

// Largest n handled: the mask takes n * n / 64 words (512 MiB at this n), and the reduction's
// "removed" words (n / 64) must fit in shared memory. More boxes go to torchvision.
int max_boxes() { return 65536; }

// Fills keep_words[col_blocks]: bit r of word b is set when sorted box b * 64 + r is kept.
// labels (n ints) may be null: one class. mask needs n * col_blocks words of scratch.
// Returns the CUDA error of the launches.
cudaError_t launch_nms(int n, float threshold, const float* boxes, const int* labels, unsigned long long* mask,
                       unsigned long long* keep_words, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  if (n > max_boxes()) return cudaErrorInvalidValue;
  const int col_blocks = (n + kBlock - 1) / kBlock;
  const dim3 grid(col_blocks, col_blocks);
  nms_mask_kernel<<<grid, kBlock, 0, stream>>>(n, col_blocks, threshold, boxes, labels, mask);
  const int threads = col_blocks < 256 ? 64 * ((col_blocks + 63) / 64) : 256;
  nms_reduce_kernel<<<1, threads < kBlock ? kBlock : threads, col_blocks * sizeof(unsigned long long), stream>>>(
      n, col_blocks, mask, keep_words);
  return cudaGetLastError();
}

}  // namespace detector_nms
