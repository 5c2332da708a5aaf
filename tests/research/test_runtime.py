"""research.runtime's machine decisions that need no GPU: nvidia-smi's output, TF's oneDNN default."""
import os
import subprocess
import sys

import pytest

from research import runtime

H200 = ("GPU 0: NVIDIA H200 (UUID: GPU-0f0e0d0c-1111-2222-3333-444455556666)\n"
        "GPU 1: NVIDIA H200 (UUID: GPU-0f0e0d0c-1111-2222-3333-444455556667)\n")
MIG = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)\n  MIG 1g.5gb Device 0: (UUID: MIG-bbbb)\n"
NO_DRIVER = ""  # nvidia-smi missing or failing: runtime.nvidia_smi_output gives ""


def test_nvidia_smi_gpu_lines():
    assert runtime.nvidia_smi_gpus(H200) == H200.strip().splitlines()
    assert runtime.nvidia_smi_gpus(MIG) == ["GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)"]
    assert runtime.nvidia_smi_gpus(NO_DRIVER) == []
    assert runtime.nvidia_smi_gpus("No devices were found\n") == []


def test_install_extras_add_gpu_only_with_a_gpu():
    assert runtime.install_extras(H200) == "dev,gpu"
    assert runtime.install_extras(MIG) == "dev,gpu"
    assert runtime.install_extras(NO_DRIVER) == "dev"
    assert runtime.install_extras("No devices were found\n") == "dev"


def test_warning_when_a_gpu_is_present_but_tensorflow_sees_none():
    message = runtime.unused_gpu_warning(H200, tensorflow_gpus=0)
    assert "2 GPU(s)" in message and "NVIDIA H200" in message and ".[gpu]" in message
    assert runtime.unused_gpu_warning(H200, tensorflow_gpus=2) is None
    assert runtime.unused_gpu_warning(NO_DRIVER, tensorflow_gpus=0) is None


def test_makefile_installs_the_extras_runtime_chooses():
    # The Makefile asks research.runtime.install_extras with the system Python, before
    # TensorFlow is installed: the module must import without it.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    makefile = open(os.path.join(root, "Makefile")).read()
    assert "from research.runtime import install_extras" in makefile and "'.[$(EXTRAS)]'" in makefile
    code = "import sys; from research.runtime import install_extras; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


@pytest.mark.slow
def test_tensorflow_default_onednn_matches_the_cpu_policy():
    # TF's policy (tensorflow/core/util/port.cc): on for Linux x86 CPUs with AVX512_VNNI,
    # AVX512_BF16, AVX_VNNI or AMX.
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    expected = any(f in flags.split() for f in ("avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile"))
    assert runtime.tensorflow_default_onednn() == expected


def test_deterministic_runs_refuse_xla_on_cpu_and_auto_turns_it_off():
    with pytest.raises(ValueError, match="deterministic=true cannot run with jit_compile=true on CPU"):
        runtime.resolve_jit_compile(True, "cpu", "float32", 1, deterministic=True)
    use, reason = runtime.resolve_jit_compile("auto", "cpu", "float32", 1, deterministic=True)
    assert use is False and "deterministic" in reason
    assert runtime.resolve_jit_compile(True, "cpu", "float32", 1)[0] is True   # unchanged
    assert runtime.resolve_jit_compile(True, "gpu", "float32", 1, deterministic=True)[0] is True


def test_auto_leaves_xla_off_on_cpu_and_turns_it_on_on_gpu():
    # XLA:CPU measured slower with and without oneDNN (the numbers are at the rule), so
    # the rule no longer takes the oneDNN setting.
    use, reason = runtime.resolve_jit_compile("auto", "cpu", "float32", 1)
    assert use is False and "CPU" in reason
    assert runtime.resolve_jit_compile(False, "cpu", "float32", 1)[0] is False
    assert runtime.resolve_jit_compile(True, "cpu", "float32", 1)[0] is True
    assert runtime.resolve_jit_compile("auto", "gpu", "float32", 1)[0] is True
