// PyTorch binding of the CUDA NMS kernel (nms_kernel.cu): sorted boxes in, kept positions out.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <cstdint>

namespace detector_nms {
int max_boxes();
cudaError_t launch_nms(int n, float threshold, const float* boxes, const int* labels, unsigned long long* mask,
                       unsigned long long* keep_words, cudaStream_t stream);
}  // namespace detector_nms

// Positions (ascending) of the boxes greedy NMS keeps; boxes [N, 4] x1, y1, x2, y2 on a CUDA
// device, sorted by descending score; labels [N] (or an empty tensor: one class) on the same
// device. Computed in float32.
torch::Tensor nms_sorted(const torch::Tensor& boxes, const torch::Tensor& labels, double iou_threshold) {
  TORCH_CHECK(boxes.is_cuda(), "nms_sorted: boxes must be a CUDA tensor, got ", boxes.device());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms_sorted: boxes must be [N, 4], got ", boxes.sizes());
  const int64_t n = boxes.size(0);
  TORCH_CHECK(n <= detector_nms::max_boxes(), "nms_sorted: at most ", detector_nms::max_boxes(), " boxes, got ", n);
  auto long_options = boxes.options().dtype(torch::kLong);
  if (n == 0) return torch::empty({0}, long_options);
  const c10::cuda::CUDAGuard guard(boxes.device());
  const auto b = boxes.to(torch::kFloat).contiguous();
  const bool has_labels = labels.numel() > 0;
  TORCH_CHECK(!has_labels || (labels.device() == boxes.device() && labels.numel() == n),
              "nms_sorted: labels must be [N] on the boxes' device, got ", labels.sizes(), " on ", labels.device());
  const auto l = has_labels ? labels.to(torch::kInt).contiguous() : labels;
  const int64_t col_blocks = (n + 63) / 64;
  auto mask = torch::empty({n * col_blocks}, long_options);
  auto keep_words = torch::empty({col_blocks}, long_options);
  const cudaError_t status = detector_nms::launch_nms(
      static_cast<int>(n), static_cast<float>(iou_threshold), b.data_ptr<float>(),
      has_labels ? l.data_ptr<int>() : nullptr,
      reinterpret_cast<unsigned long long*>(mask.data_ptr<int64_t>()),
      reinterpret_cast<unsigned long long*>(keep_words.data_ptr<int64_t>()), c10::cuda::getCurrentCUDAStream());
  TORCH_CHECK(status == cudaSuccess, "nms_sorted: CUDA launch failed: ", cudaGetErrorString(status));
  const auto shifts = torch::arange(64, long_options);
  const auto bits = keep_words.unsqueeze(1).bitwise_right_shift(shifts).bitwise_and(1).flatten().slice(0, 0, n);
  return torch::nonzero(bits).squeeze(1);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nms_sorted", &nms_sorted, "Greedy NMS of score-sorted CUDA boxes; returns kept positions",
        pybind11::arg("boxes"), pybind11::arg("labels"), pybind11::arg("iou_threshold"));
}
