"""C unit tests of the kernels and ops against oracles written in the tests themselves."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("CSPRESNET_BUILD", "build"))


def run_unit(name):
    exe = os.path.join(BUILD, "tests", name)
    assert os.path.exists(exe), f"{exe} is missing: run make first"
    p = subprocess.run([exe], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert " 0 failed" in p.stdout, p.stdout
    return p.stdout


def test_conv_gemm_matches_direct_convolution_and_is_thread_independent():
    out = run_unit("test_conv")
    assert "60 passed" in out


def test_fast_conv_kernels_match_reference_for_every_isa_the_cpu_has():
    out = run_unit("test_kernels_conv")
    assert "isas tested: 0" not in out, out
    assert "0 failed" in out, out


def test_training_kernels_and_conv_backward_match_reference_for_every_isa():
    out = run_unit("test_train_kernels")
    assert "isas tested: 0" not in out, out
    assert "0 failed" in out, out


def test_bf16_and_int8_kernels_match_reference_bit_for_bit():
    """Reference bf16/int8 tiles against oracles from first principles, then the AVX-512
    BF16/VNNI tiles (where the CPU has them) against the reference, bit for bit."""
    out = run_unit("test_lowp_kernels")
    assert "0 failed" in out, out


def test_every_fast_kernel_config_matches_its_reference_twin():
    """Each family config of every kernel set this CPU runs (GEMM tiles, im2col and
    epilogue, Winograd transforms, mean, training kernels, bf16/int8 tiles) against the
    family's reference config, kernel by kernel, edge tiles included."""
    out = run_unit("test_core_kernels")
    assert "configs tested: 0" not in out, out
    assert "f32_gemm__ref vs double" not in out, out
    # the portable fast path runs on every CPU, so at least its configs are compared
    for name in ("f32-gemm-4x16-generic", "f32-conv-generic", "f32-winograd43-generic"):
        assert f"{name} vs " in out, out
    assert " 0 failed: OK" in out, out


def test_prepared_winograd_weights_give_the_same_bits_and_are_what_runs():
    """cspresnet_model_prepare on the deployed s: the same outputs with and without the
    packed Winograd weights (1 and 2 threads, two sizes), zeroing the packing changes
    them, a ref context ignores it, the byte budget holds."""
    out = run_unit("test_prepare")
    assert "0 failed" in out, out


def test_bf16_convolution_matches_its_oracle_on_every_kernel_set():
    """ops/conv2d_bf16.c against a double-precision conv of the bf16-rounded operands
    (1x1, 3x3 s1/s2, the 3-channel stem, odd K, several K blocks, epilogues), the same
    bits for 1 and 2 threads and across the kernel sets this CPU runs."""
    out = run_unit("test_conv_bf16")
    assert "kernel sets: 0" not in out, out
    assert " 0 failed: OK" in out, out


def test_int8_convolution_matches_its_integer_oracle_on_every_kernel_set():
    """ops/conv2d_int8.c against an integer oracle (per-channel s8 weights, per-tensor
    activations with a zero point, exact int64 sums, the same fp32 epilogue): the oracle's
    bits on the reference and AVX-512 VNNI tiles, for 1 and 2 threads (1x1, 3x3 s1/s2,
    K not a multiple of 4, several K blocks, epilogues, channel slices)."""
    out = run_unit("test_conv_int8")
    assert "kernel sets: 0" not in out, out
    assert " 0 failed: OK" in out, out
