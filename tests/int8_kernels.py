"""What ONNX Runtime's INT8 convolution does on this CPU, for the tests that compare it exactly."""

import platform
from pathlib import Path


def u8s8_convolution_is_exact() -> bool:
    """Whether ONNX Runtime's uint8 x int8 convolution is exact on this CPU: on x86 without VNNI
    it multiplies with VPMADDUBSW, whose int16 sums of two products saturate (ORT's quantisation
    guide names this and suggests 7-bit weights); with VNNI or off x86 the sums are int32."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return True
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return True
    return bool({"avx512_vnni", "avx_vnni"} & set(flags.split()))
