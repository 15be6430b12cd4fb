namespace SnnSpec.Kernels

/// Optional OpenBLAS sgemm through P/Invoke (filled in with the GEMM kernel work).
module Blas =
    let isAvailable = false
