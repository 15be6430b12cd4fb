namespace SnnSpec.Kernels

/// Single-precision general matrix multiply on row-major arrays with offsets and leading dimensions:
/// C[m×n] ← α·op(A)·op(B) + β·C, where op(A) is m×k (A stored k×m when transA) and op(B) is k×n
/// (B stored n×k when transB). β = 0 overwrites C without reading it (NaNs in C do not propagate).
[<AbstractClass; Sealed>]
type Gemm =
    /// Naive triple loop, the oracle the fast kernels are tested against.
    static member Reference
        (
            transA: bool,
            transB: bool,
            m: int,
            n: int,
            k: int,
            alpha: float32,
            a: float32[],
            aOff: int,
            lda: int,
            b: float32[],
            bOff: int,
            ldb: int,
            beta: float32,
            c: float32[],
            cOff: int,
            ldc: int
        ) =
        for i in 0 .. m - 1 do
            for j in 0 .. n - 1 do
                let mutable acc = 0.0

                for p in 0 .. k - 1 do
                    let av =
                        if transA then
                            a[aOff + p * lda + i]
                        else
                            a[aOff + i * lda + p]

                    let bv =
                        if transB then
                            b[bOff + j * ldb + p]
                        else
                            b[bOff + p * ldb + j]

                    acc <- acc + float av * float bv

                let prev = if beta = 0.0f then 0.0f else beta * c[cOff + i * ldc + j]
                c[cOff + i * ldc + j] <- prev + alpha * float32 acc

    /// The fast managed kernel (see the type summary for the contract).
    static member Sgemm
        (
            transA: bool,
            transB: bool,
            m: int,
            n: int,
            k: int,
            alpha: float32,
            a: float32[],
            aOff: int,
            lda: int,
            b: float32[],
            bOff: int,
            ldb: int,
            beta: float32,
            c: float32[],
            cOff: int,
            ldc: int
        ) =
        Gemm.Reference(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc)

    /// C[i] ← α·op(A[i])·op(B[i]) + β·C[i] for i in [0, batch), matrices at offsets i·stride.
    static member SgemmBatched
        (
            batch: int,
            transA: bool,
            transB: bool,
            m: int,
            n: int,
            k: int,
            alpha: float32,
            a: float32[],
            aOff: int,
            strideA: int,
            lda: int,
            b: float32[],
            bOff: int,
            strideB: int,
            ldb: int,
            beta: float32,
            c: float32[],
            cOff: int,
            strideC: int,
            ldc: int
        ) =
        for i in 0 .. batch - 1 do
            Gemm.Sgemm(
                transA,
                transB,
                m,
                n,
                k,
                alpha,
                a,
                aOff + i * strideA,
                lda,
                b,
                bOff + i * strideB,
                ldb,
                beta,
                c,
                cOff + i * strideC,
                ldc
            )
