"""Native kernels behind the model's ops where XLA's own are slower (cpu_gemm: MKL GEMMs on CPU)."""
